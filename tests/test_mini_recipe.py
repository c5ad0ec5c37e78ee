"""End to end: egs2/mini_espeak/s2t1/run.sh on a handful of utterances, stages 1–8, then a rerun that is a no-op."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_espeak" / "s2t1"
TINY = [
    "--data_args", "--n_train 40 --n_dev 8 --n_test 16 --nj 1",
    "--init_args", "--vocab_size 300 --encoder_hidden 32 --decoder_hidden 32 --heads 2",
    "--init_lm_steps", "10", "--init_encoder_steps", "10",
    "--stage1_args", "--max_epoch 1 --batch_size 8",
    "--stage2_args", "--max_epoch 1 --batch_size 8",
    "--decode_args", "--batch_size 8 --max_new_tokens 8",
    "--nj", "1",
]


def run(recipe: Path, *args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(["./run.sh", *TINY, *args], cwd=recipe, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A fresh recipe dir: the repo's recipe files linked in, outputs (data/ dump/ exp/) local to the test."""
    d = tmp_path_factory.mktemp("mini_espeak") / "s2t1"
    d.mkdir()
    for name in ("run.sh", "conf", "local", "speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(os.path.realpath(RECIPE / name))
    return d, run(d, "--stop_stage", "8")


def test_every_stage_logs_and_writes_its_outputs(recipe):
    d, log = recipe
    for n in range(1, 9):
        assert f"Stage {n}: " in log
    for split in ("train", "dev", "test"):
        for f in ("wav.scp", "text", "utt2spk", "prompt", "transcript"):
            assert (d / "data" / split / f).stat().st_size > 0
        for f in ("feats.scp", "speech_shape", "prompt", "text"):
            assert (d / "dump" / split / f).stat().st_size > 0
    for f in ("encoder/config.json", "decoder/tokenizer.json", "decoder/pretrained_lm.json",
              "encoder/pretrained_encoder.json"):
        assert (d / "exp" / "init" / f).exists(), f
    for stage in ("tiny_stage1", "tiny_stage2"):
        for f in ("config.yaml", "valid.loss.best.pth", "valid.acc.best.pth", "images/loss.png"):
            assert (d / "exp" / stage / f).exists(), (stage, f)
    exp = d / "exp" / "tiny_stage2"
    hyps = (exp / "decode_valid.acc.best" / "test" / "text").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len((d / "dump" / "test" / "prompt").read_text(encoding="utf-8").splitlines()) == 16
    assert (exp / "RESULTS.md").read_text(encoding="utf-8").count("|") > 10
    assert (exp / "packed" / "model.zip").stat().st_size > 0
    assert "upload skipped" in log


def test_results_json_rows(recipe):
    d, _ = recipe
    rows = json.loads((d / "exp" / "tiny_stage2" / "results.json").read_text(encoding="utf-8"))
    assert rows and all(set(r) >= {"test_set", "task", "lang", "metric", "value", "n"} for r in rows)
    metrics = {(r["task"], r["metric"]) for r in rows}
    for needed in [("transcribe", "wer"), ("translate", "bleu"), ("translate", "chrf"), ("answer", "exact_match"),
                   ("transcribe", "task_confusion"), ("translate", "task_confusion")]:
        assert needed in metrics, needed


def test_rerunning_finished_stages_is_a_no_op(recipe):
    d, _ = recipe
    watched = [d / "dump/train/feats.scp", d / "exp/init/decoder/model.safetensors",
               d / "exp/tiny_stage1/checkpoint.pth", d / "exp/tiny_stage2/checkpoint.pth",
               d / "exp/tiny_stage2/decode_valid.acc.best/test/text"]
    before = {p: p.stat().st_mtime_ns for p in watched}
    log = run(d, "--stage", "1", "--stop_stage", "5")
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    assert "is complete: skipping" in log and "exp/init exists" in log
