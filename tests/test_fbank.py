"""features.fbank against the reference: HF SeamlessM4TFeatureExtractor on espeak-synthesised speech and on the
signals where float32 rounding shows (DC offsets, digital silence, tones next to silence)."""

import numpy as np
import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor

from espnet_speechlm_plugin.features import fbank
from espnet_speechlm_plugin.features.fbank import (
    MIN_NUM_SAMPLES,
    compute_fbank,
    compute_fbank_batch,
    num_output_frames,
)
from espnet_speechlm_plugin.synth.espeak import Voice, synthesize


def speak(text: str, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech for ``text`` as 16 kHz float32, through the project's one espeak wrapper."""
    return synthesize(text, Voice(voice))


@pytest.fixture(scope="module")
def speech():
    english = speak("The quick brown fox jumps over the lazy dog, then naps in the warm afternoon sun.")
    german = speak("Die rote Katze sieht zwei Hunde im Garten.", voice="de")
    # A faint noise floor like a real recording's: bins near the log floor are where precision shows.
    noisy = english + np.random.default_rng(0).normal(0.0, 3e-4, english.shape).astype(np.float32)
    return {"english": english, "german": german, "noisy": noisy}


@pytest.fixture(scope="module")
def hf_extractor():
    return SeamlessM4TFeatureExtractor()  # default config = facebook/w2v-bert-2.0's


def hf_features(extractor, waveform):
    out = extractor(waveform, sampling_rate=16000, return_tensors="np")
    return out["input_features"][0], out["attention_mask"][0]


# Lengths in samples: the minimum (2 analysis frames), odd and even analysis-frame counts, and whole utterances.
LENGTHS = [MIN_NUM_SAMPLES, 720, 16000, 16160, 23456, 40000, None]


@pytest.mark.parametrize("name", ["english", "german", "noisy"])
def test_matches_hf_extractor(speech, hf_extractor, name):
    for length in LENGTHS:
        waveform = speech[name][:length]
        ours = compute_fbank(waveform)
        features, mask = hf_features(hf_extractor, waveform)
        analysis_frames = 1 + (len(waveform) - 400) // 160
        # HF pads an odd frame count to even and masks the half-padding output frame; we return the unmasked ones.
        assert features.shape[0] == (analysis_frames + 1) // 2
        expected = features[mask == 1]
        assert ours.shape == expected.shape == (num_output_frames(len(waveform)), 160), (name, length)
        assert ours.dtype == torch.float32
        diff = np.abs(ours.numpy() - expected).max()
        assert diff < 1e-3, f"{name}[:{length}]: max abs diff {diff:.2e}"


def test_batch_equals_single(speech, monkeypatch):
    waveforms = [speech["english"], speech["german"][:MIN_NUM_SAMPLES], speech["noisy"][:16160], speech["german"]]
    singles = [compute_fbank(w) for w in waveforms]
    # Small chunks make one rfft call span utterance boundaries and cut utterances into pieces.
    for chunk_frames in (fbank._CHUNK_FRAMES, 7, 1):
        monkeypatch.setattr(fbank, "_CHUNK_FRAMES", chunk_frames)
        batched = compute_fbank_batch(waveforms)
        assert [b.shape for b in batched] == [s.shape for s in singles]
        for single, batch in zip(singles, batched):
            torch.testing.assert_close(batch, single, rtol=0, atol=1e-5)
    assert compute_fbank_batch([]) == []


def test_input_types_agree(speech):
    pcm16 = np.round(speech["english"] * 32767).astype(np.int16)
    as_float = pcm16.astype(np.float32) / 32768.0
    reference = compute_fbank(as_float)
    assert torch.equal(compute_fbank(pcm16), reference)
    assert torch.equal(compute_fbank(torch.from_numpy(pcm16)), reference)
    assert torch.equal(compute_fbank(torch.from_numpy(as_float).double()), reference)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"559 samples .*< 560 samples \(35 ms\)"):
        compute_fbank(np.zeros(MIN_NUM_SAMPLES - 1, np.float32))
    with pytest.raises(ValueError, match="need 16000 Hz audio, got 22050 Hz"):
        compute_fbank(np.zeros(22050, np.float32), sample_rate=22050)
    with pytest.raises(ValueError, match="1-D mono"):
        compute_fbank(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="float or int16"):
        compute_fbank(np.zeros(16000, np.int32))


def test_num_output_frames():
    assert [num_output_frames(n) for n in (0, 399, 559, 560, 719, 720, 880, 16000)] == [0, 0, 0, 1, 1, 1, 2, 49]


def hf_reference(extractor, waveform):
    features, mask = hf_features(extractor, waveform)
    return features[mask == 1]


def test_constant_int16_audio_is_exactly_hf(hf_extractor):
    """Digital silence with a DC offset: every frame has zero energy after DC removal (HF: exactly 0 features)."""
    noise = np.random.default_rng(1).normal(0, 3000, 8000).astype(np.int16)
    for value in (1, -1, 100, -3000, 32767, -32768):
        constant = np.full(16000, value, np.int16)
        for pcm in (constant, np.concatenate([noise, constant, noise])):
            expected = hf_reference(hf_extractor, pcm.astype(np.float32) / 32768)
            ours = compute_fbank(pcm).numpy()
            assert np.abs(ours - expected).max() < 1e-4, value
        assert np.array_equal(compute_fbank(constant).numpy(), hf_reference(hf_extractor, constant / 32768.0))


def test_float64_refinement_where_float32_rounding_shows(speech, hf_extractor):
    """Signals whose float32 features are off by 1e-2..0.4 without the float64 path (measured when it was added)."""
    rate = 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    cases = {
        # float (not int16-valued) speech on a DC offset: rounding relative to the offset, not to the speech
        "dc_offset": (speech["english"] + 0.2).astype(np.float32),
        # a pure tone leaks only far below float32 resolution into the high bins; silence gives them a spread
        "tone_then_silence": np.concatenate([tone, np.zeros(rate // 2, np.float32)]),
    }
    for name, waveform in cases.items():
        diff = np.abs(compute_fbank(waveform).numpy() - hf_reference(hf_extractor, waveform)).max()
        assert diff < 1e-3, f"{name}: max abs diff {diff:.2e}"


def test_error_bound_picks_only_frames_at_risk(speech):
    """On speech few frames need float64; on a tone next to silence most do (so the fast path stays the norm)."""
    def refined_fraction(waveform):
        tensor = torch.from_numpy(waveform)
        count = 1 + (len(waveform) - 400) // 160
        fft_input = torch.zeros(count, 512)
        means = fbank._windowed_frames(tensor, torch.empty(len(waveform)), fft_input[:, :400])
        mel = torch.empty(count, 80)
        fbank._mel_into(fft_input, mel)
        log_noise = (mel.sum(1) + means.square() * fbank._DC_POWER).log() + fbank._LOG_ROUNDING_POWER
        log_mel = mel.clamp_min(fbank.MEL_FLOOR).log()
        var = log_mel.var(dim=0)
        return len(fbank._needs_float64(log_mel, log_noise, var)) / count

    english = speech["english"][: 400 + 160 * ((len(speech["english"]) - 400) // 160)]
    assert refined_fraction(english) < 0.1
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    assert refined_fraction(np.concatenate([tone, np.zeros(8000, np.float32)])[: 400 + 160 * 147]) > 0.5
