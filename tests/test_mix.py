"""Task mixing (data/mix.py): mix configs, per-epoch draws by weight, length bucketing, the ESPnet iterator."""

from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from espnet_speechlm_plugin.data.mix import (
    MixError,
    MixIterFactory,
    MixSpec,
    bucket_batches,
    draw_mix,
    load_mix_config,
    quotas,
)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_config_errors_name_the_file_and_entry(tmp_path):
    good = "train:\n  - {dir: data/a, task: transcribe, weight: 0.5}\n"
    assert load_mix_config(_write(tmp_path / "ok.yaml", good)).train[0].weight == 0.5
    cases = {
        "train:\n  - {dir: data/a, task: transcribe, weight: 2e-4}\n": r"entry 1: weight must be a number.*2\.0e-4",
        "train:\n  - {dir: data/a, task: summarise, weight: 1.0}\n": r"entry 1: task 'summarise' is not one of",
        "train:\n  - {dir: data/a, task: transcribe, wieght: 1.0}\n": r"entry 1: unknown key\(s\) \['wieght'\]",
        "train:\n  - {dir: data/a, task: transcribe, weight: 0.0}\n": r"entry 1: weight must be > 0",
        "train:\n  - {dir: x/a, task: transcribe}\n  - {dir: y/a, task: translate}\n": r"entry 2: source name 'a'",
        "max_duration: 2.0\nmin_duration: 5.0\n" + good: r"min_duration 5.0 is larger than max_duration 2.0",
        "caps: 3\n" + good: r"unknown key\(s\) \['caps'\]",
        "valid: []\n": r"'train' must be a list",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = _write(tmp_path / f"bad{i}.yaml", text)
        with pytest.raises(MixError, match=message) as err:
            load_mix_config(path)
        assert str(path) in str(err.value)


def test_quotas_are_proportional_and_add_up():
    assert quotas({"a": 0.5, "b": 0.3, "c": 0.2}, 10) == {"a": 5, "b": 3, "c": 2}
    q = quotas({"a": 1.0, "b": 1.0, "c": 1.0}, 100)
    assert sum(q.values()) == 100 and sorted(q.values()) == [33, 33, 34]


GROUPS = {"big": [f"big-{i}" for i in range(1000)], "small": [f"small-{i}" for i in range(30)],
          "mid": [f"mid-{i}" for i in range(200)]}
WEIGHTS = {"big": 0.5, "small": 0.3, "mid": 0.2}


def test_draw_follows_the_weights_repeats_small_and_subsamples_big_sources():
    drawn = draw_mix(GROUPS, WEIGHTS, 600, seed=3, epoch=1)
    counts = Counter(u.split("-")[0] for u in drawn)
    assert counts == {"big": 300, "small": 180, "mid": 120}
    small = Counter(u for u in drawn if u.startswith("small"))
    assert set(small) == set(GROUPS["small"]) and set(small.values()) == {6}  # 6 full passes over 30 utterances
    big = [u for u in drawn if u.startswith("big")]
    assert len(set(big)) == 300  # a subsample without repeats
    again = draw_mix(GROUPS, WEIGHTS, 600, seed=3, epoch=1)
    other_epoch = draw_mix(GROUPS, WEIGHTS, 600, seed=3, epoch=2)
    other_seed = draw_mix(GROUPS, WEIGHTS, 600, seed=4, epoch=1)
    assert again == drawn and other_epoch != drawn and other_seed != drawn
    # over epochs the big source is walked through: every utterance once before any repeats
    walk = [u for e in range(1, 4) for u in draw_mix(GROUPS, WEIGHTS, 600, seed=3, epoch=e) if u.startswith("big")]
    assert len(walk) == 900 == len(set(walk))
    assert {u for u in draw_mix(GROUPS, WEIGHTS, 600, seed=3, epoch=4) if u.startswith("big")} >= set(
        GROUPS["big"]) - set(walk)
    # adding a source does not change what the others draw
    more = draw_mix(dict(GROUPS, extra=["extra-0"]), dict(WEIGHTS, extra=0.0001), 600, seed=3, epoch=1)
    assert [u for u in more if u.startswith("mid")] == [u for u in drawn if u.startswith("mid")]


def _lengths(n, seed=0):
    rng = np.random.RandomState(seed)
    frames = np.clip(rng.lognormal(np.log(300), 0.6, n), 30, 4000).astype(int)  # 0.6–80 s at 50 Hz
    return {f"utt{i:05d}": int(f) * 160 for i, f in enumerate(frames)}  # numel: frames x 160 dims


def test_bucket_batches_respects_bins_covers_everything_and_pads_little():
    lengths = _lengths(3000)
    bins = 160 * 6000  # two minutes of audio per batch
    batches = bucket_batches(lengths, bins, seed=0, epoch=1)
    flat = [u for b in batches for u in b]
    assert sorted(flat) == sorted(lengths)  # each utterance exactly once
    for b in batches:
        assert len(b) * max(lengths[u] for u in b) <= bins or len(b) == 1
    padded = sum(len(b) * max(lengths[u] for u in b) for b in batches)
    padding = 1 - sum(lengths.values()) / padded
    assert padding < 0.05, padding
    assert bucket_batches(lengths, bins, seed=0, epoch=1) == batches
    other = bucket_batches(lengths, bins, seed=0, epoch=2)
    assert other != batches and sorted(map(sorted, other)) != sorted(map(sorted, batches))  # not just reordered
    capped = bucket_batches(lengths, bins, seed=0, epoch=1, max_batch_size=4)
    assert max(len(b) for b in capped) == 4


def test_an_utterance_longer_than_the_bins_gets_its_own_batch():
    batches = bucket_batches({"a": 10, "b": 11, "huge": 500}, 100, seed=0, epoch=0)
    assert sorted(map(sorted, batches)) == [["a", "b"], ["huge"]]


def _spec(tmp_path, groups, weights, epoch_size=None):
    import json

    utt2group = "".join(f"{u} {g}\n" for g, us in groups.items() for u in us)
    _write(tmp_path / "m.utt2group", utt2group)
    meta = {"name": "m", "utt2group": "m.utt2group", "epoch_size": epoch_size,
            "sources": [{"name": g, "weight": w} for g, w in weights.items()]}
    _write(tmp_path / "m.json", json.dumps(meta))
    return MixSpec.load(tmp_path / "m.json")


def test_iterator_factory_epochs_ranks_and_iters(tmp_path):
    groups = {"a": [f"a-{i}" for i in range(50)], "b": [f"b-{i}" for i in range(10)]}
    spec = _spec(tmp_path, groups, {"a": 0.5, "b": 0.5}, epoch_size=80)
    lengths = {u: 100 + 7 * i for i, u in enumerate(groups["a"] + groups["b"])}
    factory = MixIterFactory(None, spec, lengths, batch_bins=2000, seed=1, world_size=2)
    batches = factory.batches(1)
    assert Counter(u[0] for b in batches for u in b) == {"a": 40, "b": 40}
    assert min(len(b) for b in batches) >= 2  # every batch splits over 2 ranks
    assert factory.batches(1) == batches and factory.batches(2) != batches
    # with num_iters_per_epoch, epochs are consecutive slices of the mix epochs laid end to end
    fixed = MixIterFactory(None, spec, lengths, batch_bins=2000, seed=1, num_iters_per_epoch=7)
    single = MixIterFactory(None, spec, lengths, batch_bins=2000, seed=1)
    stream = [b for m in range(1, 5) for b in single.mix_epoch(m)]
    assert [b for e in range(1, 6) for b in fixed.batches(e)] == stream[:35]
    # utterances without features (dropped by featurize) leave the mix; a source left empty is an error
    assert spec.restrict(set(lengths) - {"b-0"}).groups["b"] == groups["b"][1:]
    with pytest.raises(MixError, match=r"source\(s\) \['b'\]"):
        spec.restrict(set(groups["a"]))


def test_mix_file_errors(tmp_path):
    with pytest.raises(MixError, match="not a mix file"):
        MixSpec.load(_write(tmp_path / "x.json", "{}"))
    _spec(tmp_path, {"a": ["a-1"]}, {"a": 1.0})
    _write(tmp_path / "m.utt2group", "a-1 a\na-2 zzz\n")
    with pytest.raises(MixError, match=r"m.utt2group line 2"):
        MixSpec.load(tmp_path / "m.json")


def _source_dir(root, name, rows, task):
    """A data dir of one task with short synthetic waves: rows (utt, seconds, prompt, target)."""
    d = root / name
    d.mkdir(parents=True)
    files = {k: [] for k in ("wav.scp", "text", "prompt", "utt2spk", "utt2dur")}
    for i, (utt, sec, prompt, target) in enumerate(rows):
        t = np.arange(int(sec * 16000)) / 16000
        wav = root / f"{utt}.wav"
        if not wav.exists():
            sf.write(wav, (0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t)).astype(np.float32), 16000)
        files["wav.scp"].append(f"{utt} {wav}")
        files["text"].append(f"{utt} {target}")
        files["prompt"].append(f"{utt} {prompt}")
        files["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        files["utt2dur"].append(f"{utt} {sec}")
        assert prompt.split()[1] == task
    for k, v in files.items():
        _write(d / k, "\n".join(v) + "\n")
    return d


def test_training_draws_the_mix_through_espnet(tmp_path, tiny_init, caplog):
    """make_mix → featurize → ESPnet training with --train_mix: the mix's iterator feeds the trainer."""
    import logging

    from conftest import train_cmd

    from espnet_speechlm_plugin.bin import featurize, make_mix, speechlm_train

    asr = _source_dir(tmp_path, "asr", [("s1-a", 1.0, "en transcribe", "the red cat"),
                                        ("s2-a", 1.2, "en transcribe", "a small bird")], "transcribe")
    # the translation reuses s1-a's audio: one feature matrix for both
    st = _source_dir(tmp_path, "st", [("s1-a", 1.0, "de translate", "die rote Katze"),
                                      ("s3-b", 0.8, "it translate", "il gatto rosso")], "translate")
    mix = _write(tmp_path / "mix.yaml", f"train:\n  - {{dir: {asr}, task: transcribe, weight: 0.5}}\n"
                                        f"  - {{dir: {st}, task: translate, weight: 0.5}}\n")
    assert make_mix.main(["--mix", str(mix), "--train_dir", str(tmp_path / "train")]) == 0
    dump = tmp_path / "dump"
    assert featurize.main(["--data_dir", str(tmp_path / "train"), "--out_dir", str(dump), "--nj", "1"]) == 0
    scp = dict(line.split() for line in (dump / "feats.scp").read_text().splitlines())
    assert scp["asr-s1-a"] == scp["st-s1-a"]  # same audio in two tasks: stored once
    out = tmp_path / "exp"
    with caplog.at_level(logging.INFO):
        speechlm_train.main(train_cmd("tests/conf/stage1_tiny.yaml", out, dump, tiny_init, "--max_epoch", "1",
                                      "--train_mix", str(tmp_path / "train" / "mix.json"),
                                      "--batch_type", "numel", "--batch_bins", "40000"))
    assert (out / "valid.loss.best.pth").exists()
    lines = [r.getMessage() for r in caplog.records if "mix mix epoch 1" in r.getMessage()]
    assert lines and "asr 50.0%" in lines[0] and "st 50.0%" in lines[0], lines
