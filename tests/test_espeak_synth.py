"""espeak-ng synthesis for the demo corpus: 16 kHz float audio of plausible length, distinct voices,
every grammar language speaks, same input -> same samples, also from worker processes."""
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "egs2" / "mini_espeak" / "s2t1" / "local"))  # the demo recipe's grammar

from mini_grammar import NP, Sentence, load_grammar  # noqa: E402

from espnet_speechlm_plugin.synth import espeak as espeak_synth  # noqa: E402
from espnet_speechlm_plugin.synth.espeak import SAMPLE_RATE, Voice, synthesize, synthesize_to_file  # noqa: E402

TEXT = "the red cat sleeps in the garden"  # 7 words


def _seconds(audio):
    return audio.shape[0] / SAMPLE_RATE


def test_audio_format_and_wav_file(tmp_path):
    audio = synthesize(TEXT, Voice("en-us", "m3"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.05 < np.abs(audio).max() < 1.0
    n = synthesize_to_file(TEXT, Voice("en-us", "m3"), tmp_path / "a" / "x.wav")
    info = sf.info(str(tmp_path / "a" / "x.wav"))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", n)
    assert not [p for p in (tmp_path / "a").iterdir() if p.name != "x.wav"]  # no temporary left behind
    back, _ = sf.read(str(tmp_path / "a" / "x.wav"), dtype="float32")
    assert np.abs(back - audio).max() < 1e-4


def test_duration_follows_words_and_rate():
    normal = _seconds(synthesize(TEXT, Voice("en-us", "m1", rate=175)))
    assert 7 * 0.15 < normal < 7 * 0.6  # 100..400 ms per word
    slow = _seconds(synthesize(TEXT, Voice("en-us", "m1", rate=120)))
    fast = _seconds(synthesize(TEXT, Voice("en-us", "m1", rate=240)))
    assert slow > 1.4 * fast
    longer = _seconds(synthesize(TEXT + " every morning next to the tree", Voice("en-us", "m1", rate=175)))
    assert longer > 1.4 * normal


def _spectral_centroid(audio):
    spec = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(audio.shape[0], 1 / SAMPLE_RATE)
    return float((spec * freqs).sum() / spec.sum())


def test_voices_and_pitch_differ():
    male = synthesize(TEXT, Voice("en-us", "m3"))
    female = synthesize(TEXT, Voice("en-us", "f2"))
    assert male.shape != female.shape or not np.array_equal(male, female)
    assert _spectral_centroid(female) > _spectral_centroid(male)
    low = synthesize(TEXT, Voice("en-us", "m3", pitch=20))
    high = synthesize(TEXT, Voice("en-us", "m3", pitch=80))
    assert not np.array_equal(low[: min(len(low), len(high))], high[: min(len(low), len(high))])
    # same input, same samples
    assert np.array_equal(male, synthesize(TEXT, Voice("en-us", "m3")))


def test_every_grammar_language_speaks():
    grammar = load_grammar()
    s = Sentence(NP("dog", 3, "black"), "chase", obj=NP("cat"), place=("in", "garden"))
    for lang in grammar.languages:
        spec = grammar.espeak(lang)
        for variant in spec["variants"][:2]:
            audio = synthesize(grammar.realise(s, lang), Voice(spec["voice"], variant))
            assert 1.0 < _seconds(audio) < 8.0, (lang, variant)
            assert np.sqrt(np.mean(audio ** 2)) > 0.01, (lang, variant)


def test_bad_voices_are_refused():
    with pytest.raises(ValueError, match="no voice variant 'zz9'"):
        synthesize(TEXT, Voice("en-us", "zz9"))  # espeak itself would ignore it silently
    with pytest.raises(ValueError, match="no voice 'xx-nope'"):
        synthesize(TEXT, Voice("xx-nope"))
    with pytest.raises(ValueError, match="rate"):
        synthesize(TEXT, Voice("en-us", rate=20))
    with pytest.raises(ValueError, match="empty"):
        synthesize("  ", Voice("en-us"))


def _worker(args):
    text, voice = args
    return espeak_synth.synthesize(text, voice)


def test_worker_processes_match_in_process():
    """A wav depends on text and voice only: not on the process or what it said before (f3/f5 are breathy)."""
    jobs = [(TEXT, Voice("en-us", v, rate=150 + 10 * i)) for i, v in enumerate(["m1", "f3", "f5", "f3", "m1"])]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        remote = pool.map(_worker, jobs)
    for (text, voice), audio in zip(jobs, remote):
        assert np.array_equal(audio, synthesize(text, voice)), voice
