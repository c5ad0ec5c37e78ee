"""SeamlessM4T / w2v-BERT 2.0 compatible log-mel filterbank features, vectorised in torch.

Where it sits: recipe stage 2 (``bin/featurize.py``) turns every wav into a ``(T, 160)`` matrix with
:func:`compute_fbank`, stores it in a kaldiio ark, and the w2v-BERT encoder consumes it as ``input_features``.
The numbers must be those the encoder was pre-trained on, i.e. what
``transformers.SeamlessM4TFeatureExtractor()`` (default config, as shipped with facebook/w2v-bert-2.0)
returns for one utterance; ``tests/test_fbank.py`` checks that to 1e-3 (the difference is ~1e-5). The HF
extractor loops over frames in numpy; here frames are ``unfold`` views and a batch of utterances goes through
one rfft and one matmul per 512 frames (3-4x faster than HF on one CPU thread).

The recipe, per utterance (16 kHz mono float waveform in [-1, 1)):
  1. scale by 2**15 (Kaldi works on int16-valued samples, so log energies match Kaldi's),
  2. 25 ms frames (400 samples) every 10 ms (160), no centre padding: 1 + (N - 400) // 160 frames,
  3. per frame: remove the DC offset, pre-emphasis 0.97 (first sample: x0 * (1 - 0.97)), Povey window
     (symmetric Hann ** 0.85), zero-pad to 512, power spectrum (257 bins),
  4. 80 triangular filters, equally spaced on Kaldi's mel scale 1127 ln(1 + f/700) between 20 Hz and 8 kHz,
     triangles drawn in mel space, no area normalisation; floor at float32 eps (1.1920929e-07), natural log,
  5. per-utterance, per-bin mean/variance normalisation over ALL frames: (x - mean) / sqrt(var_unbiased + 1e-7),
  6. stack pairs of consecutive frames -> 160 dims at 50 Hz; an odd last frame is dropped.

About step 6: HF pads an odd frame count to even (``pad_to_multiple_of=2``) and so returns one more frame, half
zeros, which its ``attention_mask`` marks as padding. We return only the frames the mask keeps, so
``compute_fbank(x) == hf(x).input_features[0][hf(x).attention_mask[0] == 1]``.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_LENGTH = 512
NUM_MEL_BINS = 80
STRIDE = 2  # frames stacked per output frame
FEAT_DIM = NUM_MEL_BINS * STRIDE  # 160
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 eps, as in Kaldi
NORM_EPS = 1e-7
# One output frame needs STRIDE analysis frames: 400 + 160 samples = 35 ms.
MIN_NUM_SAMPLES = FRAME_LENGTH + (STRIDE - 1) * FRAME_SHIFT

Waveform = Union[np.ndarray, torch.Tensor]


def num_output_frames(num_samples: int) -> int:
    """Number of 160-dim output frames (50 Hz) for a 16 kHz waveform of ``num_samples`` samples."""
    if num_samples < FRAME_LENGTH:
        return 0
    return (1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT) // STRIDE


def _kaldi_mel(freq_hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + freq_hz / 700.0)


def mel_filterbank(sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Kaldi-style triangular mel filters, ``(FFT_LENGTH // 2 + 1, NUM_MEL_BINS)`` float64."""
    num_bins = FFT_LENGTH // 2 + 1
    edges = np.linspace(_kaldi_mel(20.0), _kaldi_mel(sample_rate / 2), NUM_MEL_BINS + 2)  # (82,)
    bin_mel = _kaldi_mel(np.arange(num_bins) * (sample_rate / FFT_LENGTH))  # (257,)
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]  # (80,) each
    rising = (bin_mel[:, None] - left) / (centre - left)  # (257, 80)
    falling = (right - bin_mel[:, None]) / (right - centre)  # (257, 80)
    return torch.from_numpy(np.maximum(0.0, np.minimum(rising, falling)))


def povey_window() -> torch.Tensor:
    """Kaldi's Povey window: the symmetric Hann window raised to 0.85, ``(FRAME_LENGTH,)`` float64."""
    n = np.arange(FRAME_LENGTH)
    hann = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / (FRAME_LENGTH - 1))
    return torch.from_numpy(np.power(hann, 0.85))


# Built once per process (160 KB). float64 on purpose: the signal path runs in float64 like HF's, because quiet
# frames next to loud ones put bins near the log floor, where float32 rounding of the window or the FFT
# (leakage of 1e-7 of a loud bin) moves log energies by up to 3e-3; float64 keeps parity at ~1e-6 for ~1.4x time.
_MEL = mel_filterbank()
_WINDOW = povey_window()
# Frames per rfft call: 512 frames (5 s) is a 2 MB float64 buffer that stays in cache yet amortises per-call
# overhead; on one CPU thread 128..1024 time the same, 4096 was slower under memory contention.
_CHUNK_FRAMES = 512


def _as_float_tensor(waveform: Waveform, sample_rate: int) -> torch.Tensor:
    """Validate one waveform and return it as a 1-D float32 tensor in [-1, 1) scale."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"fbank features need {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample first "
            "(features.audio.load_audio does it when reading wav.scp)"
        )
    if isinstance(waveform, np.ndarray):
        if waveform.dtype == np.int16:
            # int16 PCM -> the float scale soundfile/librosa give, so step 1's 2**15 restores it exactly.
            waveform = waveform.astype(np.float32) / 32768.0
        elif not np.issubdtype(waveform.dtype, np.floating):
            raise ValueError(f"waveform must be float or int16, got numpy dtype {waveform.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    elif isinstance(waveform, torch.Tensor):
        if waveform.dtype == torch.int16:
            tensor = waveform.float() / 32768.0
        elif waveform.is_floating_point():
            # float64 is rounded to float32 first, as the HF extractor does.
            tensor = waveform.detach().to(torch.float32)
        else:
            raise ValueError(f"waveform must be float or int16, got torch dtype {waveform.dtype}")
    else:
        raise TypeError(f"waveform must be a numpy array or torch tensor, got {type(waveform).__name__}")
    if tensor.dim() != 1:
        raise ValueError(
            f"waveform must be 1-D mono samples, got shape {tuple(tensor.shape)}; downmix multi-channel audio first"
        )
    if tensor.numel() < MIN_NUM_SAMPLES:
        raise ValueError(
            f"audio too short for fbank features: {tensor.numel()} samples ({tensor.numel() / SAMPLE_RATE * 1000:.1f} "
            f"ms) < {MIN_NUM_SAMPLES} samples ({MIN_NUM_SAMPLES / SAMPLE_RATE * 1000:.0f} ms), the minimum that "
            "gives one output frame"
        )
    return tensor.cpu()


def _emphasised_frames(samples: torch.Tensor, out: torch.Tensor) -> None:
    """Write one utterance's DC-removed, pre-emphasised frames into ``out`` (F, 400) float64, int16 scale.

    Per frame Kaldi computes y_i = (x_i - m) - 0.97 (x_{i-1} - m) for i >= 1 and y_0 = 0.03 (x_0 - m), m the frame
    mean. Since y_i = e_i - 0.03 m with e = x_i - 0.97 x_{i-1}, e is filtered once over the whole signal (N ops,
    not 2.5 N) and framed as a view; only the frame means and column 0 need per-frame work.
    """
    frames = samples.unfold(0, FRAME_LENGTH, FRAME_SHIFT)  # (F, 400) view
    means = frames.mean(dim=1, keepdim=True)  # (F, 1)
    filtered = torch.empty_like(samples)
    filtered[0] = samples[0]  # overwritten below (column 0 of frame 0); keeps the buffer defined
    torch.sub(samples[1:], samples[:-1], alpha=PREEMPHASIS, out=filtered[1:])
    torch.sub(filtered.unfold(0, FRAME_LENGTH, FRAME_SHIFT), means, alpha=1.0 - PREEMPHASIS, out=out)
    out[:, 0] = (1.0 - PREEMPHASIS) * (frames[:, 0] - means[:, 0])


def _log_mel(fft_buffer: torch.Tensor) -> torch.Tensor:
    """(F, 512) buffer, emphasised frames in columns :400 and zeros after -> (F, 80) log-mel energies, float32."""
    fft_buffer[:, :FRAME_LENGTH].mul_(_WINDOW)
    spectrum = torch.fft.rfft(fft_buffer)  # (F, 257) complex
    power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)  # (F, 257)
    return torch.matmul(power, _MEL).clamp_min_(MEL_FLOOR).log_().float()  # (F, 80)


def _normalise_and_stack(log_mel: torch.Tensor) -> torch.Tensor:
    """(F, 80) one utterance -> (F // 2, 160): per-bin CMVN over all F frames, then pairwise stacking."""
    # Statistics in float64: cheap, and the result then differs from HF's float32 numpy only by final rounding.
    stats = log_mel.double()
    centred = stats - stats.mean(dim=0, keepdim=True)  # (F, 80)
    # Unbiased variance (numpy ddof=1 in HF); written out because torch.var over dim 0 is 3x slower here.
    var = centred.square().sum(dim=0, keepdim=True) / (stats.shape[0] - 1)  # (1, 80)
    normed = (centred / torch.sqrt(var + NORM_EPS)).float()  # (F, 80)
    num_out = normed.shape[0] // STRIDE
    return normed[: num_out * STRIDE].reshape(num_out, FEAT_DIM)  # (F // 2, 160)


def compute_fbank(waveform: Waveform, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Features of one utterance: ``(T, 160)`` float32 at 50 Hz, T = ((N - 400) // 160 + 1) // 2.

    ``waveform``: 1-D numpy array or torch tensor of 16 kHz mono samples. Floats are taken in [-1, 1) scale
    (what soundfile/librosa return); int16 PCM is divided by 32768 first, so both give the same features.
    Raises ValueError for another sample rate or audio shorter than 35 ms (``MIN_NUM_SAMPLES``).
    """
    return compute_fbank_batch([waveform], sample_rate=sample_rate)[0]


def compute_fbank_batch(waveforms: Sequence[Waveform], sample_rate: int = SAMPLE_RATE) -> list[torch.Tensor]:
    """Features of several utterances of any lengths; element i equals ``compute_fbank(waveforms[i])``.

    Frames of all utterances share rfft and matmul calls, in chunks of ``_CHUNK_FRAMES`` (so FFT buffers stay a
    few MB even for an hour-long recording); only the per-utterance normalisation runs per item, so nothing is
    padded and nothing leaks between utterances.
    """
    tensors = [_as_float_tensor(w, sample_rate) for w in waveforms]
    counts = [1 + (t.numel() - FRAME_LENGTH) // FRAME_SHIFT for t in tensors]
    log_mel = torch.empty(sum(counts), NUM_MEL_BINS)  # (sum F_i, 80)
    # Frames [a, b) of an utterance only need samples [a * 160, (b - 1) * 160 + 400): column 0 of every frame
    # is recomputed from the raw samples, so a piece cut there needs no history from before it.
    pieces = [
        tensor[a * FRAME_SHIFT : (min(a + _CHUNK_FRAMES, count) - 1) * FRAME_SHIFT + FRAME_LENGTH]
        for tensor, count in zip(tensors, counts)
        for a in range(0, count, _CHUNK_FRAMES)
    ]
    row = 0
    while pieces:
        chunk = [pieces.pop(0)]
        while pieces and _num_frames(chunk) + _num_frames(pieces[:1]) <= _CHUNK_FRAMES:
            chunk.append(pieces.pop(0))
        # Frames go straight into the zero-padded FFT buffer: rfft(n=512) would pad with another copy.
        fft_buffer = torch.empty(_num_frames(chunk), FFT_LENGTH, dtype=torch.float64)  # (F_chunk, 512)
        fft_buffer[:, FRAME_LENGTH:] = 0.0
        start = 0
        for piece in chunk:
            count = _num_frames([piece])
            _emphasised_frames(piece.double() * 32768.0, out=fft_buffer[start : start + count, :FRAME_LENGTH])
            start += count
        log_mel[row : row + start] = _log_mel(fft_buffer)
        row += start
    return [_normalise_and_stack(utterance) for utterance in torch.split(log_mel, counts, dim=0)]


def _num_frames(pieces: Sequence[torch.Tensor]) -> int:
    return sum(1 + (p.numel() - FRAME_LENGTH) // FRAME_SHIFT for p in pieces)
