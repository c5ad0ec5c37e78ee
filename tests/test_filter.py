"""Duration caps (data/filter.py) and the combined data dirs of bin/make_mix.py: exactly the right utterances are
dropped, each counted per source and reason, nothing silently."""

import json

import numpy as np
import pytest
import soundfile as sf

from espnet_speechlm_plugin.bin import make_mix
from espnet_speechlm_plugin.data.filter import DurationCaps, apply_caps
from espnet_speechlm_plugin.data.mix import MixError, MixSpec


def test_caps_keep_the_bounds_and_name_the_reason():
    caps = DurationCaps(max_duration=45.0, min_duration=0.5)
    durs = {"a": 0.49, "b": 0.5, "c": 45.0, "d": 45.01, "e": 10.0}
    kept, dropped = apply_caps(["a", "b", "c", "d", "e", "f"], durs, caps)
    assert kept == ["b", "c", "e"]
    assert dropped == {"a": "too_short", "d": "too_long", "f": "no_duration"}
    assert caps.describe("too_long") == "longer than max_duration 45 s"
    assert apply_caps(["a", "d"], durs, DurationCaps())[0] == ["a", "d"]  # no caps: everything stays
    with pytest.raises(ValueError, match="min_duration 5 is larger than max_duration 2"):
        DurationCaps(max_duration=2, min_duration=5)
    with pytest.raises(ValueError, match="max_duration must be a number"):
        DurationCaps(max_duration="45")


def _data_dir(root, name, task, rows, utt2dur=True):
    """rows: (utt, seconds, lang, target[, question]); audio paths are fake unless utt2dur=False (then real wavs)."""
    d = root / name
    d.mkdir(parents=True)
    files = {k: [] for k in ("wav.scp", "text", "prompt", "utt2spk", "utt2dur", "transcript")}
    for utt, sec, lang, target, *question in rows:
        wav = root / "audio" / f"{utt.rsplit('-', 1)[0]}.wav"  # one speaker/passage, one audio
        if not utt2dur and not wav.exists():
            wav.parent.mkdir(exist_ok=True)
            sf.write(wav, np.zeros(int(sec * 16000), np.float32) + 0.1, 16000)
        files["wav.scp"].append(f"{utt} {wav}")
        files["text"].append(f"{utt} {target}")
        files["prompt"].append(f"{utt} {' '.join([lang, task] + question)}")
        files["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        files["utt2dur"].append(f"{utt} {sec}")
        files["transcript"].append(f"{utt} some words")
    if not utt2dur:
        del files["utt2dur"]
    for k, v in files.items():
        (d / k).write_text("\n".join(v) + "\n", encoding="utf-8")
    return d


@pytest.fixture
def sources(tmp_path):
    asr = _data_dir(tmp_path, "ls_en_train", "transcribe", [
        ("s1-u1", 3.0, "en", "the cat"), ("s1-u2", 60.0, "en", "a long one"), ("s2-u3", 95.0, "en", "too long"),
        ("s2-u4", 0.3, "en", "short")])
    sqa = _data_dir(tmp_path, "sqa_en_train", "answer", [
        ("p1-q1", 40.0, "en", "red", "what colour"), ("p1-q2", 40.0, "en", "two", "how many"),
        ("p2-q1", 50.0, "en", "Not answerable.", "who")])
    dev = _data_dir(tmp_path, "ls_en_dev", "transcribe", [("s9-d1", 2.0, "en", "dev one"),
                                                           ("s9-d2", 100.0, "en", "dev long")])
    mix1 = tmp_path / "train_mix_stage1.yaml"
    mix1.write_text(f"max_duration: 90.0\nmin_duration: 0.5\ntrain:\n"
                    f"  - {{dir: {asr}, task: transcribe, weight: 1.0}}\n"
                    f"valid:\n  - {{dir: {dev}, task: transcribe}}\n", encoding="utf-8")
    mix2 = tmp_path / "train_mix_stage2.yaml"
    mix2.write_text(f"max_duration: 45.0\nmin_duration: 0.5\nepoch_size: 100\ntrain:\n"
                    f"  - {{dir: {asr}, task: transcribe, weight: 0.25}}\n"
                    f"  - {{dir: {sqa}, task: answer, weight: 0.75, name: sqa}}\n", encoding="utf-8")
    return tmp_path, mix1, mix2


def test_make_mix_drops_exactly_the_capped_utterances_and_reports_them(sources, capsys):
    root, mix1, mix2 = sources
    train, dev = root / "data" / "train", root / "data" / "dev"
    assert make_mix.main(["--mix", str(mix1), str(mix2), "--train_dir", str(train), "--valid_prefix", str(dev)]) == 0
    out = capsys.readouterr().out
    # stage 1 (90 s): u3 too long, u4 too short; stage 2 (45 s): also u2 (60 s) and the 50 s passage
    dropped1 = dict(line.split(" ", 1) for line in (train / "train_mix_stage1.dropped").read_text().splitlines())
    dropped2 = dict(line.split(" ", 1) for line in (train / "train_mix_stage2.dropped").read_text().splitlines())
    assert dropped1 == {"ls_en_train-s2-u3": "longer than max_duration 90 s",
                        "ls_en_train-s2-u4": "shorter than min_duration 0.5 s",
                        "ls_en_dev-s9-d2": "longer than max_duration 90 s"}
    assert dropped2 == {"ls_en_train-s1-u2": "longer than max_duration 45 s",
                        "ls_en_train-s2-u3": "longer than max_duration 45 s",
                        "ls_en_train-s2-u4": "shorter than min_duration 0.5 s",
                        "sqa-p2-q1": "longer than max_duration 45 s"}
    # the report: one row per source with counts per reason, printed and written
    report = (train / "mix_report.txt").read_text()
    assert report in out
    rows = {line.split()[0]: line.split()[1:] for line in report.split("\n\n")[1].splitlines()[2:]}
    # utterances kept hours in_eval too_long too_short no_duration
    assert rows["sqa"] == ["3", "2", "0.02", "0", "1", "0", "0"]
    assert rows["ls_en_train"] == ["4", "1", "0.00", "0", "2", "1", "0"]
    assert "dropped 3 of 6 utterances" in report and "dropped 4 of 7 utterances" in report  # stage 1 counts valid
    # the combined dir holds what at least one mix keeps, ids and speakers prefixed by source
    utt2spk = dict(line.split() for line in (train / "utt2spk").read_text().splitlines())
    assert utt2spk == {"ls_en_train-s1-u1": "ls_en_train-s1", "ls_en_train-s1-u2": "ls_en_train-s1",
                       "sqa-p1-q1": "sqa-p1", "sqa-p1-q2": "sqa-p1"}
    for name in ("wav.scp", "text", "prompt", "utt2dur", "transcript", "utt2group"):
        assert sorted(line.split()[0] for line in (train / name).read_text().splitlines()) == sorted(utt2spk)
    assert (train / "spk2utt").read_text().splitlines()[0] == "ls_en_train-s1 ls_en_train-s1-u1 ls_en_train-s1-u2"
    assert "sqa-p1-q1 en answer what colour" in (train / "prompt").read_text()
    # two questions on one passage keep one wav.scp value, so featurize stores the audio once
    wavs = dict(line.split() for line in (train / "wav.scp").read_text().splitlines())
    assert wavs["sqa-p1-q1"] == wavs["sqa-p1-q2"]
    # each mix's own utterances and weights, as training reads them
    spec2 = MixSpec.load(train / "train_mix_stage2.json")
    assert spec2.groups == {"ls_en_train": ["ls_en_train-s1-u1"], "sqa": ["sqa-p1-q1", "sqa-p1-q2"]}
    assert spec2.weights == {"ls_en_train": 0.25, "sqa": 0.75} and spec2.epoch_size == 100
    meta = json.loads((train / "train_mix_stage1.json").read_text())
    assert meta["epoch_size"] == 2 and meta["caps"] == {"max_duration": 90.0, "min_duration": 0.5}
    # the stage-1 mix's valid set is its own dir; the stage-2 mix lists none, so it gets none
    assert (root / "data" / "dev_train_mix_stage1" / "text").read_text() == "ls_en_dev-s9-d1 dev one\n"
    assert not (root / "data" / "dev_train_mix_stage2").exists() and not dev.exists()
    assert meta["valid_dir"] == f"{dev}_train_mix_stage1"


def test_task_mismatch_and_bad_dirs_are_errors_naming_the_file(sources, capsys):
    root, mix1, _ = sources
    bad = root / "bad.yaml"
    bad.write_text(f"train:\n  - {{dir: {root / 'ls_en_train'}, task: translate, weight: 1.0}}\n", encoding="utf-8")
    assert make_mix.main(["--mix", str(bad), "--train_dir", str(root / "x")]) == 1
    err = capsys.readouterr().err
    assert "ls_en_train/prompt line 1 (utterance 's1-u1'): task 'transcribe', but" in err and "bad.yaml" in err
    assert not (root / "x").exists()
    missing = root / "missing.yaml"
    missing.write_text(f"train:\n  - {{dir: {root / 'nope'}, task: translate}}\n", encoding="utf-8")
    with pytest.raises(MixError, match=r"missing.yaml: train entry 1: data dir .*nope does not exist"):
        make_mix.make_mix([str(missing)], str(root / "x"))
    (root / "ls_en_train" / "text").write_text("s1-u1 the cat\n", encoding="utf-8")
    with pytest.raises(MixError, match=r"ls_en_train/text: utterance 's1-u2' has no line in text"):
        make_mix.make_mix([str(mix1)], str(root / "x"), str(root / "y"))


def test_durations_come_from_the_audio_when_utt2dur_is_missing(tmp_path):
    d = _data_dir(tmp_path, "cv_en_train", "transcribe", [("a-1", 1.0, "en", "x"), ("b-2", 3.0, "en", "y")],
                  utt2dur=False)
    mix = tmp_path / "m.yaml"
    mix.write_text(f"max_duration: 2.0\ntrain:\n  - {{dir: {d}, task: transcribe}}\n", encoding="utf-8")
    make_mix.make_mix([str(mix)], str(tmp_path / "train"), progress=False)
    assert (tmp_path / "train" / "utt2dur").read_text() == "cv_en_train-a-1 1.000\n"
    assert (tmp_path / "train" / "m.dropped").read_text() == "cv_en_train-b-2 longer than max_duration 2 s\n"


def _tasks(d):
    return {line.split()[2] for line in (d / "prompt").read_text().splitlines()}


def test_each_training_stage_validates_on_its_own_tasks(tmp_path):
    """A stage-1 (ASR) mix validates on ASR dirs only, a stage-2 mix on its own list: no shared merged dev set."""
    asr = _data_dir(tmp_path, "ls_en_train", "transcribe", [("s1-u1", 3.0, "en", "the cat")])
    asr_dev = _data_dir(tmp_path, "ls_en_dev", "transcribe", [("s9-d1", 2.0, "en", "dev one")])
    st = _data_dir(tmp_path, "cv_en_de_train", "translate", [("s3-t1", 3.0, "de", "die Katze")])
    st_dev = _data_dir(tmp_path, "cv_en_de_dev", "translate", [("s8-t2", 3.0, "de", "der Hund")])
    qa_dev = _data_dir(tmp_path, "sqa_en_dev", "answer", [("p7-q1", 9.0, "en", "red", "what colour")])
    mix1 = tmp_path / "train_mix_stage1.yaml"
    mix1.write_text(f"train:\n  - {{dir: {asr}, task: transcribe}}\n"
                    f"valid:\n  - {{dir: {asr_dev}, task: transcribe}}\n", encoding="utf-8")
    mix2 = tmp_path / "train_mix_stage2.yaml"
    mix2.write_text(f"train:\n  - {{dir: {asr}, task: transcribe}}\n  - {{dir: {st}, task: translate}}\n"
                    f"valid:\n  - {{dir: {st_dev}, task: translate}}\n  - {{dir: {qa_dev}, task: answer}}\n",
                    encoding="utf-8")
    make_mix.make_mix([str(mix1), str(mix2)], str(tmp_path / "data/train"), str(tmp_path / "data/dev"),
                      progress=False)
    dev1, dev2 = tmp_path / "data/dev_train_mix_stage1", tmp_path / "data/dev_train_mix_stage2"
    assert _tasks(dev1) == {"transcribe"} and (dev1 / "wav.scp").read_text().split()[0] == "ls_en_dev-s9-d1"
    assert _tasks(dev2) == {"translate", "answer"}
    assert "ls_en_dev-s9-d1" not in (dev2 / "wav.scp").read_text()
    with pytest.raises(MixError, match="give --valid_prefix"):
        make_mix.make_mix([str(mix1)], str(tmp_path / "x"), progress=False)


def test_evaluation_clips_are_removed_from_every_training_source(tmp_path):
    """A training utterance whose audio is a valid or test utterance's is dropped, found by the same file (also
    through a symlinked folder), the same clip name and duration (another copy of the corpus), or the same
    sentence and speaker (another file); look-alikes that differ in one of these stay. Counted per source."""
    root = tmp_path
    clips, copies = root / "cv4" / "clips", root / "cv17" / "clips"
    for folder in (clips, copies):
        folder.mkdir(parents=True)
    for name, sec in (("c1", 1.0), ("c2", 1.5), ("c3", 2.0), ("c4", 2.5), ("c5", 1.0), ("c6", 3.0)):
        for folder in (clips, copies):
            sf.write(folder / f"common_voice_en_{name}.wav", np.zeros(int(sec * 16000)), 16000)
    (root / "cv4_link").symlink_to(root / "cv4")
    for split in ("train_wav", "dev_wav"):  # numbered alike in two splits, as long as each other
        (root / split).mkdir()
        sf.write(root / split / "0_0_0.wav", np.zeros(16000), 16000)

    def make(name, task, rows):
        """rows: (utt, speaker, audio, seconds, sentence, target)"""
        d = root / name
        d.mkdir()
        cols = {"wav.scp": [], "text": [], "prompt": [], "utt2spk": [], "utt2dur": [], "transcript": []}
        for utt, spk, audio, sec, said, target in rows:
            cols["wav.scp"].append(f"{utt} {audio}")
            cols["text"].append(f"{utt} {target}")
            cols["prompt"].append(f"{utt} {'de' if task == 'translate' else 'en'} {task}")
            cols["utt2spk"].append(f"{utt} {spk}")
            cols["utt2dur"].append(f"{utt} {sec:.3f}")
            cols["transcript"].append(f"{utt} {said}")
        for k, v in cols.items():
            (d / k).write_text("\n".join(v) + "\n", encoding="utf-8")
        return d

    w = lambda folder, n: folder / f"common_voice_en_{n}.wav"  # noqa: E731
    test = make("covost2_en_de_test", "translate", [
        ("covost2_en_de-aa-c1", "covost2_en_de-aa", w(clips, "c1"), 1.0, "The cat sleeps.", "Die Katze schläft."),
        ("covost2_en_de-bb-c2", "covost2_en_de-bb", w(clips, "c2"), 1.5, "We open it.", "Wir öffnen es."),
        ("covost2_en_de-cc-c3", "covost2_en_de-cc", w(clips, "c3"), 2.0, 'My book, "Ulysses".', "Mein Buch."),
        ("covost2_en_de-qq-p0", "covost2_en_de-qq", root / "dev_wav/0_0_0.wav", 1.0, "A passage.", "x")])
    dev = make("covost2_en_de_dev", "translate", [
        ("covost2_en_de-dd-c6", "covost2_en_de-dd", w(clips, "c6"), 3.0, "A dev sentence.", "Ein Satz.")])
    train = make("cv_en_train", "transcribe", [
        ("cv_en-aa-c1", "cv_en-aa", w(root / "cv4_link" / "clips", "c1"), 1.0, "The cat sleeps.", "x"),  # file
        ("cv_en-bb-c2", "cv_en-bb", w(copies, "c2"), 1.5, "We open it.", "x"),  # clip name + duration
        ("cv_en-cc-c7", "cv_en-cc", w(copies, "c4"), 2.5, "MY BOOK ULYSSES", "x"),  # sentence + speaker
        ("cv_en-zz-c8", "cv_en-zz", w(copies, "c5"), 1.0, "my book ulysses", "x"),  # same sentence, other speaker
        ("cv_en-dd-c6", "cv_en-dd", w(clips, "c6"), 3.0, "A dev sentence.", "x"),  # a valid clip of the other mix
        ("cv_en-ee-c9", "cv_en-ee", w(copies, "c3"), 2.01, "Something else.", "x"),  # same name, other duration
        ("cv_en-pp-p0", "cv_en-pp", root / "train_wav/0_0_0.wav", 1.0, "Other passage.", "x")])  # other folder
    sf.write(root / "103-1240-0000.flac", np.zeros(48000), 16000)  # as long as the dev clip, another name
    other = make("ls_en_train", "transcribe", [("ls-s1-u1", "ls-s1", root / "103-1240-0000.flac", 3.0, "Other.", "x")])
    mix1 = root / "train_mix_stage1.yaml"
    mix1.write_text(f"train:\n  - {{dir: {train}, task: transcribe}}\n  - {{dir: {other}, task: transcribe}}\n",
                    encoding="utf-8")
    mix2 = root / "train_mix_stage2.yaml"
    mix2.write_text(f"train:\n  - {{dir: {train}, task: transcribe}}\n"
                    f"valid:\n  - {{dir: {dev}, task: translate}}\n", encoding="utf-8")
    report = make_mix.make_mix([str(mix1), str(mix2)], str(root / "data/train"), str(root / "data/dev"),
                               exclude_dirs=[str(test)], progress=False)
    kept = (root / "data/train/wav.scp").read_text().split("\n")
    assert sorted(line.split()[0] for line in kept if line) == [
        "cv_en_train-cv_en-ee-c9", "cv_en_train-cv_en-pp-p0", "cv_en_train-cv_en-zz-c8", "ls_en_train-ls-s1-u1"]
    dropped = dict(line.split(" ", 1) for line in (root / "data/train/train_mix_stage1.dropped").read_text()
                   .splitlines())
    assert dropped == {
        "cv_en_train-cv_en-aa-c1": f"evaluation clip: same audio file as 'covost2_en_de-aa-c1' of {test}",
        "cv_en_train-cv_en-bb-c2": f"evaluation clip: same clip name and duration as 'covost2_en_de-bb-c2' of {test}",
        "cv_en_train-cv_en-cc-c7": f"evaluation clip: same sentence and speaker as 'covost2_en_de-cc-c3' of {test}",
        "cv_en_train-cv_en-dd-c6": f"evaluation clip: same audio file as 'covost2_en_de-dd-c6' of {dev}"}
    # the report: per mix the in_eval column, and one table per source, kind of match and evaluation set
    overlap = report.split("\n\n")[-1].splitlines()
    assert "checked against 5 utterances of 2 valid/test data dirs" in overlap[0]
    rows = {line.split()[0]: line.split()[1:] for line in overlap[2:]}
    assert rows["cv_en_train"][:5] == ["7", "4", "2", "1", "1"]  # utterances removed same_file same_clip sentence
    assert " ".join(rows["cv_en_train"][5:]) == f"({dev} 1, {test} 3)"
    assert rows["ls_en_train"] == ["1", "0", "0", "0", "0"] and rows["total"] == ["8", "4", "2", "1", "1"]
    stage1 = {line.split()[0]: line.split()[1:] for line in report.split("\n\n")[0].splitlines()[2:]}
    assert stage1["cv_en_train"][:4] == ["7", "3", "0.00", "4"]
    # a training source that is all evaluation data is an error, not an empty source
    bad = root / "bad.yaml"
    bad.write_text(f"train:\n  - {{dir: {test}, task: translate}}\n", encoding="utf-8")
    with pytest.raises(MixError, match=r"no utterance of .*covost2_en_de_test is left for training \(4 are "
                                       r"evaluation clips"):
        make_mix.make_mix([str(bad)], str(root / "x"), exclude_dirs=[str(test)], progress=False)
