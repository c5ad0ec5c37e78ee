"""The mini_espeak corpus builder: Kaldi data dirs that agree with each other, shared wavs, the task mix
asked for, held-out test sentences, byte-identical reruns (also across worker counts), skip when complete."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "egs2" / "mini_espeak" / "s2t1" / "local"))  # the demo recipe's grammar and corpus maker

import make_mini_corpus as mmc  # noqa: E402
import mini_grammar  # noqa: E402
from mini_grammar import load_grammar  # noqa: E402

SIZES = {"train": 14, "dev": 6, "test": 10}
UNANSWERABLE = {"en": "Not answerable.", "de": "Nicht zu beantworten.", "it": "Non è possibile rispondere.",
                "zh": "无法回答。"}


def _read(path):
    return [line.rstrip("\n") for line in open(path, encoding="utf-8")]


def _table(path):
    return dict(line.split(" ", 1) if " " in line else (line, "") for line in _read(path))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    mmc.build_corpus(root / "data", root / "wav", sizes=SIZES, seed=3, nj=1)
    return root


def test_data_dirs_agree(built):
    data = built / "data"
    assert sorted(p.name for p in data.iterdir()) == ["corpus_stats.json", "dev", "test", "train"]
    for split, n in SIZES.items():
        files = {name: _read(data / split / name) for name in mmc.DATA_FILES}
        ids = [line.split(" ", 1)[0] for line in files["text"]]
        assert len(ids) == n and ids == sorted(ids) and len(set(ids)) == n  # C-locale order, unique
        for name in ("wav.scp", "utt2spk", "prompt", "transcript"):
            assert [line.split(" ", 1)[0] for line in files[name]] == ids, name
        utt2spk = _table(data / split / "utt2spk")
        assert all(utt.startswith(spk + "-") for utt, spk in utt2spk.items())
        assert list(utt2spk.values()) == sorted(utt2spk.values())  # Kaldi: sorting by utt also sorts by speaker
        spk2utt = {line.split()[0]: line.split()[1:] for line in files["spk2utt"]}
        assert {u: s for s, us in spk2utt.items() for u in us} == utt2spk


def test_prompts_targets_and_shared_wavs(built):
    grammar = load_grammar()
    for split in SIZES:
        d = built / "data" / split
        wav, text, prompt, transcript = (_table(d / f) for f in ("wav.scp", "text", "prompt", "transcript"))
        for utt, rest in prompt.items():
            lang, task, *question = rest.split(" ", 2)
            assert lang in grammar.languages and task in ("transcribe", "translate", "answer")
            assert utt.endswith(f"-{task}-{lang}")
            assert bool(question) == (task == "answer")
            if task == "transcribe":
                assert text[utt] == transcript[utt]
            if task == "translate":
                assert lang != grammar.source and text[utt] != transcript[utt]
            if task == "answer" and text[utt] in UNANSWERABLE.values():
                assert text[utt] == UNANSWERABLE[lang]
        # one recording, several tasks: utterances of a recording share its wav and its transcript
        by_wav = {}
        for utt, path in wav.items():
            assert os.path.isabs(path) and Path(path).exists()
            by_wav.setdefault(path, set()).add(transcript[utt])
        assert len(by_wav) < len(wav) and all(len(t) == 1 for t in by_wav.values())
        for path in by_wav:
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16") and info.duration > 0.5


def test_corpus_stats(built):
    stats = json.loads((built / "data" / "corpus_stats.json").read_text(encoding="utf-8"))
    assert stats["vocabulary"]["en"]["lexicon"] >= 200
    assert 3 <= stats["words_per_sentence"]["en"]["min"] <= stats["words_per_sentence"]["en"]["max"] <= 10
    assert stats["held_out"]["test_sentences_in_train"] == 0
    for split, n in SIZES.items():
        s = stats["splits"][split]
        assert s["utterances"] == n == sum(c for task in s["tasks"].values() for c in task.values())
        assert 0 < s["hours_audio"] < s["hours_utterances"]
    assert stats["voice_variants"] == sum(len(v) for v in stats["voices"].values())


def test_rerun_is_identical_and_skips(built, tmp_path):
    """Same arguments, fresh directories, two worker processes: the same bytes; a complete corpus is kept."""
    mmc.build_corpus(tmp_path / "data", tmp_path / "wav", sizes=SIZES, seed=3, nj=2)
    for split in SIZES:
        for name in mmc.DATA_FILES:
            a = (built / "data" / split / name).read_text(encoding="utf-8").replace(str(built), "ROOT")
            b = (tmp_path / "data" / split / name).read_text(encoding="utf-8").replace(str(tmp_path), "ROOT")
            assert a == b, (split, name)
    stats = [json.loads((root / "data/corpus_stats.json").read_text(encoding="utf-8")) for root in (built, tmp_path)]
    assert stats[0].pop("fingerprint") != stats[1].pop("fingerprint")  # it covers the wav paths
    assert stats[0] == stats[1]
    wavs = sorted(p.relative_to(built / "wav") for p in (built / "wav").rglob("*.wav"))
    assert wavs == sorted(p.relative_to(tmp_path / "wav") for p in (tmp_path / "wav").rglob("*.wav"))
    assert all((built / "wav" / w).read_bytes() == (tmp_path / "wav" / w).read_bytes() for w in wavs)
    assert not list(tmp_path.glob("*.tmp")) and not list((tmp_path / "data").glob(".*"))

    stamp = (tmp_path / "data/train/text").stat().st_mtime_ns
    mmc.build_corpus(tmp_path / "data", tmp_path / "wav", sizes=SIZES, seed=3, nj=1)
    assert (tmp_path / "data/train/text").stat().st_mtime_ns == stamp
    # another seed rebuilds in place
    mmc.build_corpus(tmp_path / "data", tmp_path / "wav", sizes=SIZES, seed=4, nj=1)
    assert (tmp_path / "data/train/text").read_text() != (built / "data/train/text").read_text()
    in_use = {p for split in SIZES for p in _table(tmp_path / "data" / split / "wav.scp").values()}
    assert {str(p) for p in (tmp_path / "wav").rglob("*.wav")} == in_use  # no stale wavs left behind


def test_plan_mix_and_held_out_at_demo_size(tmp_path):
    """The default task mix and unanswerable share, and disjoint splits, on the demo's sizes (no audio)."""
    grammar = load_grammar()
    sizes = {"train": 2400, "dev": 100, "test": 200}
    plan = mmc.plan_corpus(grammar, sizes, mmc.DEFAULT_MIX, 0.25, 1, tmp_path)
    train = plan["train"]
    tasks = Counter((u.task, u.lang) for u in train)
    assert tasks["transcribe", "en"] == 600  # DEFAULT_MIX: 0.25 / 0.4 / 0.25 / 0.1
    assert [tasks["translate", lang] for lang in ("de", "it", "zh")] == [320, 320, 320]
    assert [tasks["answer", lang] for lang in grammar.languages] == [150] * 4
    assert [tasks["transcribe", lang] for lang in ("de", "it", "zh")] == [80] * 3
    assert len({u.rec.wav for u in train}) == 600 + 240  # English recordings serve several tasks
    answers = [u for u in train if u.task == "answer"]
    assert sum(not u.answerable for u in answers) / len(answers) == pytest.approx(0.25, abs=0.01)
    assert all((u.text == UNANSWERABLE[u.lang]) == (not u.answerable) for u in answers)
    sentences = {split: {u.rec.text for u in utts if u.rec.lang == "en"} for split, utts in plan.items()}
    assert not sentences["test"] & sentences["train"] and not sentences["dev"] & sentences["train"]
    assert len({u.rec.voice.name for u in train}) >= 8
    assert len({u.rec.voice.rate for u in train}) > 20 and len({u.rec.voice.pitch for u in train}) > 20


def test_data_sh_runs_the_builder(tmp_path):
    script = REPO / "egs2/mini_espeak/s2t1/local/data.sh"
    env = {k: v for k, v in os.environ.items() if k != "MAIN_ROOT"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    subprocess.run(["bash", str(script), "--n_train", "4", "--n_dev", "2", "--n_test", "2", "--nj", "1"],
                   cwd=tmp_path, env=env, check=True, capture_output=True)
    assert len(_read(tmp_path / "data/train/text")) == 4
    wavs = _table(tmp_path / "data/dev/wav.scp").values()
    assert all(Path(p).parent.parent == tmp_path / "downloads/wav" for p in wavs)


def test_interrupted_synthesis_resumes_to_the_same_corpus(built, tmp_path, monkeypatch):
    real, calls = mmc.espeak_synth.synthesize_to_file, []

    def dies_on_third(text, voice, path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(text, voice, path)

    monkeypatch.setattr(mmc.espeak_synth, "synthesize_to_file", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        mmc.build_corpus(tmp_path / "data", tmp_path / "wav", sizes=SIZES, seed=3, nj=1)
    assert not (tmp_path / "wav").exists() and not (tmp_path / "data").exists()  # nothing half-made in place
    assert len(list((tmp_path / "wav.tmp").rglob("*.wav"))) == 2
    monkeypatch.setattr(mmc.espeak_synth, "synthesize_to_file", real)
    mmc.build_corpus(tmp_path / "data", tmp_path / "wav", sizes=SIZES, seed=3, nj=1)
    for w in (built / "wav").rglob("*.wav"):
        assert w.read_bytes() == (tmp_path / "wav" / w.relative_to(built / "wav")).read_bytes()

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("not ours")
    with pytest.raises(SystemExit, match="not written by make_mini_corpus"):
        mmc.build_corpus(tmp_path / "data2", tmp_path / "other", sizes=SIZES, seed=3, nj=1)


def test_unknown_espeak_voice_fails_before_synthesis(tmp_path):
    """A language block naming a voice espeak-ng lacks stops the plan with the grammar key to fix."""
    spec = yaml.safe_load(open(mini_grammar.DEFAULT_GRAMMAR, encoding="utf-8"))
    spec["languages"]["de"]["espeak"]["voice"] = "klingon"
    grammar = mini_grammar.Grammar(spec, "conf/grammar.yaml")
    with pytest.raises(ValueError, match=r"languages\.de\.espeak\.voice is 'klingon'"):
        mmc.plan_corpus(grammar, {"train": 4, "dev": 2, "test": 2}, mmc.DEFAULT_MIX, 0.25, 1, tmp_path)
    assert not any(tmp_path.iterdir())
