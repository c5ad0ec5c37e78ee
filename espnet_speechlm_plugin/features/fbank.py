"""SeamlessM4T / w2v-BERT 2.0 compatible log-mel filterbank features, vectorised in torch.

Where it sits: recipe stage 2 (``bin/featurize.py``) turns every wav into a ``(T, 160)`` matrix with
:func:`compute_fbank_batch`, stores it in a kaldiio ark, and the w2v-BERT encoder consumes it as ``input_features``.
The numbers must be those the encoder was pre-trained on, i.e. what
``transformers.SeamlessM4TFeatureExtractor()`` (default config, as shipped with facebook/w2v-bert-2.0)
returns for one utterance; ``tests/test_fbank.py`` checks that to 1e-3 (the difference is ~1e-4). The HF
extractor loops over frames in numpy and float64; here the frames of a whole batch go through one float32 rfft
and a few small matmuls per 1024 frames, about 20-30x faster than HF on one CPU thread (``bench/``).

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

Precision: the fast path runs in float32 (HF: float64), whose rounding is relative to the whole frame's energy:
it can only move mel bins that lie > ~100 dB below the frame's total, and normalisation divides that by the bin's
spread over the utterance. An error bound per frame and bin (``_needs_float64``) sends the rare frames where the
normalised result could move by more than ``PRECISION_TARGET`` through a float64 path that follows HF step by
step: none to a few % of the frames of speech, every frame of a pure tone, and digital silence with a DC offset.
Over speech, tones, chirps, clipping, DC offsets and silences the result stays within ~2e-4 of HF.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_LENGTH = 512
NUM_MEL_BINS = 80
STRIDE = 2  # frames stacked per output frame
FEAT_DIM = NUM_MEL_BINS * STRIDE  # 160
FRAME_RATE = SAMPLE_RATE / (FRAME_SHIFT * STRIDE)  # 50.0 output frames per second
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 eps, as in Kaldi
NORM_EPS = 1e-7
# One output frame needs STRIDE analysis frames: 400 + 160 samples = 35 ms.
MIN_NUM_SAMPLES = FRAME_LENGTH + (STRIDE - 1) * FRAME_SHIFT
INT16_SCALE = 2.0**15

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


# Per group of consecutive filters: the columns lo:hi of the (F, 514) squared spectrum (re_0^2, im_0^2, re_1^2, ...)
# that feed them, and their weights: ``power @ mel`` becomes a few (F, ~2*53) @ (~2*53, 16) matmuls.
MelBlock = Tuple[int, int, torch.Tensor]


def _mel_blocks(filters_per_block: int = 16) -> List[MelBlock]:
    # Each FFT bin feeds at most two adjacent filters, so the (257, 80) matrix has ~500 non-zeros: a dense matmul
    # would do 40x the multiply-adds. 16 filters per block was the fastest split (8 and 40 were 2-3x slower).
    # The int16 scale of step 1 enters here as 2**30 on the power: exact in binary, so bit-identical to scaling
    # the samples, and one pass over the signal fewer.
    mel = mel_filterbank() * INT16_SCALE**2  # (257, 80) float64
    blocks = []
    for f0 in range(0, NUM_MEL_BINS, filters_per_block):
        f1 = min(f0 + filters_per_block, NUM_MEL_BINS)
        used = (mel[:, f0:f1] > 0).any(dim=1).nonzero().flatten()
        lo, hi = int(used[0]), int(used[-1]) + 1
        weights = mel[lo:hi, f0:f1].repeat_interleave(2, dim=0).float().contiguous()  # (2 (hi - lo), f1 - f0)
        blocks.append((2 * lo, 2 * hi, weights))
    return blocks


# Built once per process (a few KB).
_MEL_BLOCKS = _mel_blocks()
_MEL64 = mel_filterbank() * INT16_SCALE**2  # (257, 80) for the float64 path
_WINDOW = povey_window().float()
_WINDOW64 = povey_window()
# The first window sample is exactly 0, so a frame's column 0 (Kaldi's special pre-emphasis x0 * (1 - 0.97))
# never reaches the FFT: steps 2-3 become one filter over the whole signal plus a per-frame DC term.
assert float(_WINDOW[0]) == 0.0
# Frames per FFT call: 1024 frames keep the float32 buffers (2 MB FFT input, 2 MB output) near the 1-2 MB
# per-core L2 while amortising per-call overhead; 512 and 2048 were ~5-25% slower on one CPU thread.
_CHUNK_FRAMES = 1024

# Frames whose predicted float32 error after normalisation exceeds this go through float64 (module docstring).
PRECISION_TARGET = 5e-4
# The error bound: float32 rounding adds noise of power ~ u^2 (u = 2**-24) times the frame's energy to every FFT
# bin, which moves the log energy of a filter with n bins and energy E by ~ sqrt(u^2 * energy * n / E); divided
# by the bin's standard deviation over the utterance, that is the error after normalisation. Calibrated on
# speech, tones, chirps and DC offsets against float64: it overestimates speech errors 10-100x and never
# underestimated an error by more than 2.5x.
_LOG_BINS_PER_FILTER = torch.log((_MEL64 > 0).sum(dim=0).float())  # (80,)
_LOG_ROUNDING_POWER = math.log(2.0**-48)
# The DC term: time-domain rounding of e_i is relative to the pre-emphasised DC 0.03 m of a frame, which spreads
# ~ 256 * (0.03 m)^2 * sum(w^2) of power (int16 scale, like the mel energies) over the spectrum.
_DC_POWER = 256 * (1.0 - PREEMPHASIS) ** 2 * INT16_SCALE**2 * float((_WINDOW64**2).sum())


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
    return tensor.cpu().contiguous()


def _windowed_frames(samples: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write the DC-removed, pre-emphasised, windowed frames of ``samples`` (N,) into ``out`` (F, 400) float32.

    Per frame Kaldi computes y_i = (x_i - m) - 0.97 (x_{i-1} - m) for i >= 1, m the frame mean, which is
    y_i = e_i - 0.03 m with e_i = (x_i - x_{i-1}) + 0.03 x_{i-1}: e is filtered once over the whole signal and
    framed as a view, so each frame costs two passes (subtract, window) instead of three. Written this way a
    constant frame x_i = c of int16 values gives exactly y = 0, as in HF: x_i - x_{i-1} = 0, m = c exactly (400
    int16 values sum exactly in float32: 400 * 2**15 < 2**24), and the other two terms are the same rounding of
    0.03 c. Sample 0 of a frame meets window weight 0, so its value does not matter. ``scratch`` is an (N,) work
    buffer. Returns the frame means m (F,).
    """
    filtered = scratch[: samples.numel()]
    filtered[0] = 0.0
    torch.sub(samples[1:], samples[:-1], out=filtered[1:]).add_(samples[:-1], alpha=1.0 - PREEMPHASIS)  # (N,)
    means = samples.unfold(0, FRAME_LENGTH, FRAME_SHIFT).mean(dim=1)  # (F,)
    torch.sub(filtered.unfold(0, FRAME_LENGTH, FRAME_SHIFT), (1.0 - PREEMPHASIS) * means[:, None], out=out)
    out.mul_(_WINDOW)  # (F, 400)
    return means


def _mel_into(fft_input: torch.Tensor, out: torch.Tensor) -> None:
    """(F, 512) windowed frames zero-padded to 512 -> mel energies (F, 80) in ``out`` (floor and log come later)."""
    spectrum = torch.view_as_real(torch.fft.rfft(fft_input))  # (F, 257, 2)
    squares = spectrum.reshape(fft_input.shape[0], 2 * (FFT_LENGTH // 2 + 1)).square_()  # (F, 514): re^2, im^2
    torch.cat([torch.mm(squares[:, lo:hi], weights) for lo, hi, weights in _MEL_BLOCKS], dim=1, out=out)


def _log_mel_float64(frames: torch.Tensor) -> torch.Tensor:
    """(F, 400) raw frames in [-1, 1) scale -> (F, 80) log-mel in float64, HF's order of operations."""
    frames = frames.double()
    centred = frames - frames.mean(dim=1, keepdim=True)  # (F, 400)
    fft_input = torch.zeros(frames.shape[0], FFT_LENGTH, dtype=torch.float64)  # (F, 512)
    torch.sub(centred[:, 1:], centred[:, :-1], alpha=PREEMPHASIS, out=fft_input[:, 1:FRAME_LENGTH])
    fft_input[:, 1:FRAME_LENGTH] *= _WINDOW64[1:]  # column 0 stays 0: window weight 0
    spectrum = torch.fft.rfft(fft_input)  # (F, 257)
    power = spectrum.real.square() + spectrum.imag.square()
    return (power @ _MEL64).clamp_min_(MEL_FLOOR).log_()  # (F, 80)


def _needs_float64(log_mel: torch.Tensor, log_noise: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Indices of the frames of one utterance whose normalised float32 features may be off by > PRECISION_TARGET.

    ``log_mel`` (F, 80), ``log_noise`` (F,) = log(u^2 * frame energy), ``var`` (80,) the bins' variance.
    Error bound u * sqrt(energy * n_k / E_k) / std_k > target  <=>  log E_k - log n_k + log(target^2 var_k) <
    log(u^2 * energy).
    """
    offset = torch.log(var.clamp_min(1e-30) * PRECISION_TARGET**2) - _LOG_BINS_PER_FILTER  # (80,)
    return ((log_mel + offset).amin(dim=1) < log_noise).nonzero().flatten()


def _normalise_and_stack(log_mel: torch.Tensor, samples: torch.Tensor, log_noise: torch.Tensor) -> torch.Tensor:
    """(F, 80) one utterance -> (F // 2, 160): float64 refinement, per-bin CMVN over all F frames, stacking.

    ``samples`` (N,) are the utterance's samples, used to recompute the frames ``_needs_float64`` picks.
    """
    num_frames = log_mel.shape[0]
    for attempt in range(2):
        # float32 like HF's numpy; torch's sums are cascaded, so their rounding stays ~1e-7 relative.
        centred = log_mel - log_mel.mean(dim=0)  # (F, 80)
        var = (centred * centred).sum(dim=0).div_(num_frames - 1)  # (80,) unbiased, as numpy ddof=1 in HF
        if attempt == 1:
            break
        redo = _needs_float64(log_mel, log_noise, var)
        if len(redo) == 0:
            break
        frames = samples.unfold(0, FRAME_LENGTH, FRAME_SHIFT)[redo]  # (R, 400)
        log_mel[redo] = _log_mel_float64(frames).float()  # the statistics change a little: recompute them
    normed = centred.mul_(var.add_(NORM_EPS).rsqrt_())  # (F, 80)
    num_out = num_frames // STRIDE
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
    mel = torch.empty(sum(counts), NUM_MEL_BINS)  # (sum F_i, 80)
    means = torch.empty(sum(counts))  # (sum F_i,) frame means, for the error bound
    # Frames [a, b) of an utterance only need samples [a * 160, (b - 1) * 160 + 400) (sample 0 of a frame is
    # windowed away, so a piece cut there needs no history from before it).
    pieces = [
        tensor[a * FRAME_SHIFT : (min(a + _CHUNK_FRAMES, count) - 1) * FRAME_SHIFT + FRAME_LENGTH]
        for tensor, count in zip(tensors, counts)
        for a in range(0, count, _CHUNK_FRAMES)
    ]
    # One FFT buffer for the whole call; its zero padding (columns 400:512) is written once.
    fft_input = torch.zeros(min(_CHUNK_FRAMES, len(mel)), FFT_LENGTH)  # (C, 512) float32
    scratch = torch.empty((len(fft_input) - 1) * FRAME_SHIFT + FRAME_LENGTH)  # samples of C frames
    row, index = 0, 0
    while index < len(pieces):
        filled = 0
        while index < len(pieces) and filled + _num_frames(pieces[index]) <= _CHUNK_FRAMES:
            rows = slice(filled, filled + _num_frames(pieces[index]))
            means[row + rows.start : row + rows.stop] = _windowed_frames(
                pieces[index], scratch, out=fft_input[rows, :FRAME_LENGTH]
            )
            filled = rows.stop
            index += 1
        _mel_into(fft_input[:filled], out=mel[row : row + filled])
        row += filled
    # log(u^2 * frame energy): the filters' energies sum to about the frame's, plus the DC term.
    log_noise = mel.sum(dim=1).add_(means.square_().mul_(_DC_POWER)).log_().add_(_LOG_ROUNDING_POWER)  # (sum F_i,)
    # Floor and log in place through numpy: its float32 log is ~3x faster than torch's on one thread.
    mel_np = mel.numpy()
    np.maximum(mel_np, MEL_FLOOR, out=mel_np)
    np.log(mel_np, out=mel_np)
    return [
        _normalise_and_stack(log_mel, tensor, noise)
        for log_mel, tensor, noise in zip(torch.split(mel, counts), tensors, torch.split(log_noise, counts))
    ]


def _num_frames(piece: torch.Tensor) -> int:
    return 1 + (piece.numel() - FRAME_LENGTH) // FRAME_SHIFT
