"""SpeechLMInference and its CLI: any sample rate / channel count in (resampled, downmixed, logged), long audio
cut in pauses, decoded per piece and stitched in order with timings, hard cuts de-duplicated, clear errors."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import UTTS

from espnet_speechlm_plugin.features.segment import SegmentConfig, join_tokens, plan_segments, stitch
from espnet_speechlm_plugin.synth.espeak import Voice, synthesize

REPO = Path(__file__).resolve().parents[1]

SENTENCES = ["the red cat sleeps in the garden", "two small dogs chase the brown horse",
             "a green bird sings on the old bridge", "the cows eat the apples today"]


@pytest.fixture(scope="module")
def model(tiny_exp):
    from espnet_speechlm_plugin import SpeechLMInference

    return SpeechLMInference.from_pretrained(tiny_exp[3], max_seconds=4.0)


@pytest.fixture(scope="module")
def speech():
    return synthesize(SENTENCES[0], Voice("en-us", "m3", 170, 50))  # 16 kHz float32


def test_load_input_audio_resamples_downmixes_and_scales():
    from espnet_speechlm_plugin.zoo.inference import load_input_audio

    rng = np.random.RandomState(0)
    x = (0.1 * rng.randn(8000)).astype(np.float32)
    wave, rate, ch = load_input_audio(x, sample_rate=8000)
    assert (rate, ch) == (8000, 1) and np.array_equal(wave, soxr.resample(x, 8000, 16000))
    stereo = np.stack([x, -0.5 * x], axis=1)  # (N, 2) as soundfile gives
    expected = soxr.resample(stereo.mean(axis=1, dtype=np.float32), 8000, 16000)
    assert np.array_equal(load_input_audio(stereo, 8000)[0], expected)
    assert np.array_equal(load_input_audio(stereo.T.copy(), 8000)[0], expected)  # (2, N) as torchaudio gives
    pcm = (x * 32768).astype(np.int16)
    assert np.allclose(load_input_audio(pcm, 16000)[0], pcm / 32768.0, atol=0)
    with pytest.raises(ValueError, match="sample_rate"):
        load_input_audio(x)


def test_cli_any_rate_and_channels(model, speech, tiny_exp, tmp_path, capsys, caplog):
    from espnet_speechlm_plugin.bin import speechlm_inference

    files = {}
    for rate in (8000, 22050, 44100):
        files[rate] = tmp_path / f"talk_{rate}.wav"
        sf.write(files[rate], soxr.resample(speech, 16000, rate), rate, subtype="FLOAT")
    files["mono"] = tmp_path / "talk_16k.wav"
    sf.write(files["mono"], speech, 16000, subtype="FLOAT")
    files["stereo"] = tmp_path / "talk_stereo.wav"
    sf.write(files["stereo"], np.stack([speech, speech], axis=1), 16000, subtype="FLOAT")
    wavs = [str(f) for f in files.values()]
    args = ["--model", str(tiny_exp[3]), "--task", "translate", "--lang", "de", *wavs]
    with caplog.at_level(logging.INFO):
        speechlm_inference.main(args)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in printed] == wavs  # one line per file, in the order given
    hyps = dict(line.split("\t", 1) for line in printed)
    for rate in (8000, 22050, 44100):
        assert f"{files[rate]}: {rate} Hz, 1 channel(s) → 16000 Hz mono (resampled with soxr)" in caplog.text
        assert hyps[str(files[rate])] == model(files[rate], task="translate", lang="de").text
    assert f"{files['stereo']}: 16000 Hz, 2 channel(s) → 16000 Hz mono (downmixed: channel mean)" in caplog.text
    assert hyps[str(files["stereo"])] == hyps[str(files["mono"])]  # identical channels: downmix is exact

    out, segs = tmp_path / "hyp.tsv", tmp_path / "segments.tsv"
    speechlm_inference.main(args + ["--out", str(out), "--segments", str(segs)])
    assert out.read_text(encoding="utf-8").splitlines() == printed
    rows = [line.split("\t") for line in segs.read_text(encoding="utf-8").splitlines()]
    assert [r[0] for r in rows] == wavs and all(float(r[1]) == 0.0 for r in rows)  # short files: one piece each


def long_recording():
    """Four espeak sentences with 0.7 s pauses (and 0.3 s at the ends) in faint noise: (wave, pause intervals)."""
    rng = np.random.RandomState(1)
    gap = np.zeros(int(0.7 * 16000), np.float32)
    parts, pauses, t = [np.zeros(int(0.3 * 16000), np.float32)], [], int(0.3 * 16000)
    for i, text in enumerate(SENTENCES):
        audio = synthesize(text, Voice("en-us", "m3", 170, 50))
        parts.append(audio)
        t += len(audio)
        if i < len(SENTENCES) - 1:
            parts.append(gap)
            pauses.append((t, t + len(gap)))
            t += len(gap)
    parts.append(np.zeros(int(0.3 * 16000), np.float32))
    wave = np.concatenate(parts)
    return (wave + 1e-4 * rng.randn(len(wave))).astype(np.float32), pauses


def test_long_audio_cut_in_pauses_decoded_and_stitched_in_order(model):
    wave, pauses = long_recording()
    assert len(wave) / 16000 > 2 * model.segment.max_seconds
    segs = plan_segments(wave, 16000, model.segment)
    assert len(segs) == len(SENTENCES)  # one piece per sentence: cut at every long pause
    assert int(0.25 * 16000) <= segs[0].start and segs[-1].end <= len(wave) - int(0.25 * 16000)  # silence trimmed
    slack = 400  # one analysis frame (25 ms); espeak sentences also start and end with a few quiet ms
    for a, b, (p0, p1) in zip(segs, segs[1:], pauses):  # the gap between two pieces is the pause between sentences
        assert p0 - slack <= a.end <= p1 and p0 <= b.start <= p1 + 4 * slack, (a.end, b.start, p0, p1)
        assert np.abs(wave[a.end: b.start]).max() < 0.01  # nothing audible is left out
    assert all(s.end - s.start <= 4.0 * 16000 for s in segs)

    out = model(wave, sample_rate=16000, task="transcribe", lang="en")
    assert [(s.start, s.end) for s in out.segments] == [(s.start_s, s.end_s) for s in segs]
    assert all(s.decoded for s in out.segments)
    alone = [model(wave[s.start: s.end], sample_rate=16000).text for s in segs]  # each piece on its own
    assert [s.text for s in out.segments] == alone
    assert out.text == join_tokens([t for text in alone for t in text.split()])
    assert out.duration == pytest.approx(len(wave) / 16000)


def test_pieces_come_back_in_time_order_across_batches(model, monkeypatch):
    """Pieces are decoded longest first in batches; each text must return to its own piece. The decoder is
    replaced by one that answers with the piece's frame count, so every piece has a different, known text."""
    import espnet_speechlm_plugin.decoding as decoding
    from espnet_speechlm_plugin.features.fbank import num_output_frames

    def frames_as_text(model_, speech, speech_lengths, *args):
        return [model.tokenizer(f"frames{int(n)}", add_special_tokens=False)["input_ids"] for n in speech_lengths]

    monkeypatch.setattr(decoding, "generate", frames_as_text)
    monkeypatch.setattr(model, "batch_size", 2)
    wave, _ = long_recording()
    segs = plan_segments(wave, 16000, model.segment)
    expected = [f"frames{num_output_frames(s.end - s.start)}" for s in segs]
    assert len(set(expected)) == len(segs) > 2 and expected != sorted(expected, key=lambda t: -int(t[6:]))
    out = model.decode([wave, wave[: len(wave) // 3]], sample_rate=16000)
    assert [s.text for s in out[0].segments] == expected
    assert out[0].text == " ".join(expected)
    assert out[1].text == f"frames{num_output_frames(len(wave) // 3)}"


def test_hard_cuts_overlap_and_stitching_drops_repeats():
    rng = np.random.RandomState(0)
    t = np.arange(10 * 16000) / 16000
    hum = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(t))) + 0.01 * rng.randn(len(t))).astype(np.float32)
    cfg = SegmentConfig(max_seconds=4.0, min_seconds=1.0, overlap=0.5)
    segs = plan_segments(hum, 16000, cfg)  # no pause anywhere: every cut is hard
    assert segs[0].start == 0 and segs[-1].end >= len(hum) - 400 and len(segs) == 3
    for a, b in zip(segs, segs[1:]):
        assert a.end - b.start == 8000 and b.hard_cut_before and a.end - a.start == 4 * 16000
    assert stitch(["the red cat sat", "Cat sat, on the mat"], [False, True]) == "the red cat sat on the mat"
    assert stitch(["the red cat sat", "cat sat on the mat"], [False, False]) == "the red cat sat cat sat on the mat"
    assert stitch(["红色的猫", "的猫在花园"], [False, True]) == "红色的猫在花园"
    assert join_tokens(["猫", "cat", "狗", "狗"]) == "猫 cat 狗狗"


def test_silent_pieces_are_timed_but_not_decoded(model, speech):
    wave = np.concatenate([speech, np.zeros(6 * 16000, np.float32), speech])
    out = model(wave, sample_rate=16000)
    assert [s.decoded for s in out.segments].count(False) >= 1
    assert all(s.text == "" for s in out.segments if not s.decoded)
    assert out.segments[0].start == 0 and out.segments[-1].end == pytest.approx(len(wave) / 16000, abs=0.03)


def test_prompt_errors_are_clear(model, speech):
    with pytest.raises(ValueError, match="unknown language 'fr'.*en, de, it, zh"):
        model(speech, sample_rate=16000, lang="fr")
    with pytest.raises(ValueError, match="needs a question"):
        model(speech, sample_rate=16000, task="answer")
    with pytest.raises(ValueError, match="only used with task='answer'"):
        model(speech, sample_rate=16000, task="transcribe", question="what colour is the cat")
    with pytest.raises(ValueError, match="needs its sample rate"):
        model(speech)


def test_package_import_is_light():
    code = ("import sys, espnet_speechlm_plugin as p; assert 'torch' not in sys.modules, 'torch imported'; "
            "print(p.SpeechLMInference.__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["SpeechLMInference", "True"]


def test_a_question_is_asked_once_of_the_whole_recording(model, monkeypatch):
    """answer on long audio: one prompt whose audio is every speech piece's embeddings joined in order (not one
    answer per piece); it decodes the same alone or beside other inputs."""
    import torch

    import espnet_speechlm_plugin.decoding as decoding
    from espnet_speechlm_plugin.features.fbank import compute_fbank_batch
    from espnet_speechlm_plugin.model.generate import generate_from_audio, length_budget

    question = "what colour is the cat"
    wave, _ = long_recording()
    segs = plan_segments(wave, 16000, model.segment)
    assert len(segs) == len(SENTENCES) and all(s.has_speech for s in segs)
    feats = compute_fbank_batch([wave[s.start: s.end] for s in segs])
    with torch.no_grad():
        pieces = [model.model.encode_speech(f[None], torch.tensor([len(f)]))[0][0] for f in feats]
    joined = torch.cat(pieces)[None]  # (1, sum of the pieces' lengths, H_lm)
    prompt = torch.from_numpy(model.decoder.preprocess("q", {"prompt": f"en answer {question}"})["prompt"])[None]
    budget = length_budget(model.generate, torch.tensor([sum(len(f) for f in feats)]))
    expected = model.decoder.text(generate_from_audio(model.model, joined, torch.tensor([joined.size(1)]), prompt,
                                                      torch.tensor([prompt.size(1)]), budget, model.generate)[0])

    asked = []
    real = decoding.generate_from_audio

    def spy(model_, audio, audio_lengths, prompt_, prompt_lengths, *rest):
        asked.append(audio_lengths.tolist())
        return real(model_, audio, audio_lengths, prompt_, prompt_lengths, *rest)

    monkeypatch.setattr(decoding, "generate_from_audio", spy)
    out = model(wave, sample_rate=16000, task="answer", lang="en", question=question)
    assert asked == [[joined.size(1)]]  # one row: the question, asked once of all four pieces
    assert out.text == expected
    assert [(s.start, s.end, s.text) for s in out.segments] == [(0.0, out.duration, expected)]
    short = model.decode([wave[: len(wave) // 5], wave], sample_rate=16000, task="answer", question=question)
    assert short[1].text == expected and len(asked) == 2  # batched with a one-piece input, padded: same answer


def test_beam_size_is_honoured_by_the_api_and_the_cli(tiny_exp, tmp_path, capsys):
    """GenerateConfig(beam_size=...) and the CLI's --beam_size/--length_penalty decode exactly as stage 5 does with
    the same options; on this model beam search changes outputs (it is not greedy in disguise)."""
    from espnet_speechlm_plugin import SpeechLMInference
    from espnet_speechlm_plugin.bin import decode, speechlm_inference
    from espnet_speechlm_plugin.data.kaldi import read_kaldi_text
    from espnet_speechlm_plugin.model.generate import GenerateConfig

    root, dump, _, exp2 = tiny_exp
    stage5 = {}
    for name, opts in [("greedy", []), ("beam", ["--beam_size", "3", "--length_penalty", "0"])]:
        decode.main(["--config", str(exp2 / "config.yaml"), "--model_file", str(exp2 / "valid.acc.best.pth"),
                     "--data_dir", str(dump), "--out_dir", str(tmp_path / name), *opts])
        stage5[name] = read_kaldi_text(tmp_path / name / "text")
    assert stage5["beam"] != stage5["greedy"]
    m = SpeechLMInference.from_pretrained(exp2, generate=GenerateConfig(beam_size=3, length_penalty=0.0))
    for utt, _, prompt, _ in UTTS:
        lang, task, *question = prompt.split(maxsplit=2)
        assert m(root / f"{utt}.wav", task=task, lang=lang, question=(question or [None])[0]).text \
            == stage5["beam"][utt]
    wavs = [str(root / f"{u}.wav") for u, _, p, _ in UTTS if p.startswith("en transcribe")]
    speechlm_inference.main(["--model", str(exp2), "--task", "transcribe", "--lang", "en", "--beam_size", "3",
                             "--length_penalty", "0", *wavs])
    printed = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert printed == {w: stage5["beam"][Path(w).stem] for w in wavs}
    with pytest.raises(SystemExit):
        speechlm_inference.main(["--model", str(exp2), "--beam_size", "0", *wavs])
    assert "--beam_size must be >= 1" in capsys.readouterr().err
