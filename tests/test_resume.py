"""Exact resume: ``kill -9`` of training at a random moment, rerun with ``--resume true``, same model and losses.

Runs the real entry point (``python -m espnet_speechlm_plugin.bin.speechlm_train``) in a subprocess on the tiny
models, CPU, one thread, fixed seeds; stage-2 config, so dropout and the encoder's SpecAugment draw random numbers.
Also: a checkpoint cut short while being written, and an epoch whose model file and links were never written.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import make_data_dir, train_cmd
from espnet_speechlm_plugin.tasks.resumable_trainer import ResumableTrainer, load_checkpoint

MAX_EPOCH = 8


@pytest.fixture(scope="module")
def dump(tiny_init, tmp_path_factory):
    from espnet_speechlm_plugin.bin import featurize

    root = tmp_path_factory.mktemp("resume")
    data = make_data_dir(root)
    assert featurize.main(["--data_dir", str(data), "--out_dir", str(root / "dump")]) == 0
    return root / "dump"


def command(out, dump, tiny_init):
    return [sys.executable, "-m", "espnet_speechlm_plugin.bin.speechlm_train",
            *train_cmd("tests/conf/stage2_tiny.yaml", out, dump, tiny_init, "--max_epoch", str(MAX_EPOCH), "--seed", "3",
                       "--use_matplotlib", "false", "--resume", "true")]


def latest_epoch(out) -> int:
    try:
        return int(os.readlink(out / "latest.pth").split("epoch")[0])
    except OSError:
        return 0


def train(out, dump, tiny_init, kill_in_epoch=None, epoch_seconds=None, fraction=0.0):
    """Run training; returns (return code, seconds each epoch took as seen from outside).

    With ``kill_in_epoch=k`` it is killed ``fraction`` of an epoch after epoch k-1 was saved.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(out.parent / f"{out.name}.log", "a")
    proc = subprocess.Popen(command(out, dump, tiny_init), stdout=log, stderr=subprocess.STDOUT, env=env)
    seen, stamps = 0, []
    try:
        while proc.poll() is None:
            epoch = latest_epoch(out)
            if epoch != seen:
                seen = epoch
                stamps.append(time.monotonic())
                if kill_in_epoch is not None and epoch >= kill_in_epoch - 1:
                    time.sleep(fraction * epoch_seconds)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    break
            time.sleep(0.003)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return proc.returncode, steps


def final_state(out):
    states = load_checkpoint(out / "checkpoint.pth")
    stats = states["reporter"]["stats"]
    losses = {(e, phase, key): float(stats[e][phase][key])
              for e in stats for phase in ("train", "valid") for key in ("loss", "acc")}
    return states["model"], losses, states["reporter"]["epoch"]


def assert_same_run(a, b):
    model_a, losses_a, epoch_a = final_state(a)
    model_b, losses_b, epoch_b = final_state(b)
    assert epoch_a == epoch_b == MAX_EPOCH
    assert losses_a == losses_b  # every epoch's train/valid loss and accuracy, bit for bit
    assert model_a.keys() == model_b.keys()
    different = [k for k in model_a if not torch.equal(model_a[k], model_b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert not list(b.glob(".*tmp")), "temp files of interrupted saves are left"
    for link in ("valid.loss.best.pth", "valid.acc.best.pth", "latest.pth"):
        assert os.readlink(a / link) == os.readlink(b / link), link


@pytest.fixture(scope="module")
def uninterrupted(dump, tiny_init):
    out = dump.parent / "uninterrupted"
    code, steps = train(out, dump, tiny_init)
    assert code == 0, (out.parent / "uninterrupted.log").read_text()[-3000:]
    return out, sorted(steps)[len(steps) // 2]


def test_kill_9_at_a_random_moment_then_resume_equals_an_uninterrupted_run(dump, tiny_init, uninterrupted):
    reference, epoch_seconds = uninterrupted
    rng = random.Random(20251125)
    kill_in_epoch, fraction = rng.randint(2, 4), rng.random()
    out = dump.parent / "killed"
    code, _ = train(out, dump, tiny_init, kill_in_epoch, epoch_seconds, fraction)
    assert code == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = latest_epoch(out)
    assert 1 <= killed_at < MAX_EPOCH
    shutil.copytree(out, dump.parent / "killed_copy", symlinks=True)  # for the next test

    code, _ = train(out, dump, tiny_init)
    assert code == 0, (out.parent / "killed.log").read_text()[-3000:]
    log = (out.parent / "killed.log").read_text()
    assert "The training was resumed using" in log  # it continued, it did not start over
    assert_same_run(reference, out)


def test_checkpoint_cut_short_while_written_restarts_and_still_matches(dump, tiny_init, uninterrupted):
    reference, _ = uninterrupted
    out = dump.parent / "truncated"
    shutil.copytree(dump.parent / "killed_copy", out, symlinks=True)
    checkpoint = out / "checkpoint.pth"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # what a kill during plain torch.save leaves

    code, _ = train(out, dump, tiny_init)
    assert code == 0, (out.parent / "truncated.log").read_text()[-3000:]
    assert "cannot be read" in (out.parent / "truncated.log").read_text()
    assert len(list(out.glob("checkpoint.pth.unreadable-*"))) == 1
    assert_same_run(reference, out)


def test_an_epoch_killed_after_its_checkpoint_is_completed_on_resume(uninterrupted, tmp_path):
    """Kill after checkpoint.pth but before Nepoch.pth and the links: the resume writes them from the checkpoint."""
    reference, _ = uninterrupted
    out = tmp_path / "exp"
    shutil.copytree(reference, out, symlinks=True)
    last = f"{MAX_EPOCH}epoch.pth"
    best = {link: os.readlink(out / link) for link in ("valid.loss.best.pth", "valid.acc.best.pth")}
    (out / last).unlink()
    (out / "latest.pth").unlink()
    for link in best:
        (out / link).unlink()
    best_epochs = {int(t.split("epoch")[0]) for t in best.values()}
    stale = min(set(range(1, MAX_EPOCH)) - best_epochs)
    (out / f"{stale}epoch.pth").write_bytes((reference / last).read_bytes())  # a leftover outside the n-best

    options = type("Options", (), dict(best_model_criterion=[("valid", "loss", "min"), ("valid", "acc", "max")],
                                       keep_nbest_models=[1]))
    assert ResumableTrainer.check_and_repair(out, options) is None
    assert os.readlink(out / "latest.pth") == last
    for link, target in best.items():
        assert os.readlink(out / link) == target
    saved = torch.load(out / last, weights_only=True)
    expected = torch.load(reference / last, weights_only=True)
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    kept = {p.name for p in out.glob("*epoch.pth")}
    assert kept == {f"{e}epoch.pth" for e in {MAX_EPOCH, *best_epochs}}
