"""features.fbank against the reference: HF SeamlessM4TFeatureExtractor on espeak-synthesised speech."""

import sys
from pathlib import Path

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))
from espeak_synth import Voice, synthesize  # noqa: E402



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
