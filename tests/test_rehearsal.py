"""The rehearsal of egs2/iwslt25_if/s2t1 (`make rehearsal`): stages 1-7 with real-size random-weight models on CPU,
then its report checked — every step present and passed, real-size memory, outputs of the packed model equal to
stage 5's after reloading, every metric row of RESULTS.md computed, a memory plan for every real config.

Slow (about 45 min and 20 GB of RAM): not in CI. Run it alone:
    REHEARSAL_HEAVY_LOCK=/tmp/heavy.lock pytest -m slow tests/test_rehearsal.py
(REHEARSAL_HEAVY_LOCK: where machines are shared through an flock file, the real-size steps take it exclusively;
do not run this test under that lock yourself.) REHEARSAL_SIZE=tiny runs the harness on tiny architectures.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from espnet_speechlm_plugin.bin.memory_plan import default_configs

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "iwslt25_if" / "s2t1"
MODELS = ("qwen2.5-0.5b", "qwen2.5-1.5b_lora")
pytestmark = pytest.mark.timeout(4 * 3600)  # the module's first test also runs the rehearsal (pytest.ini: 600 s)
STAGES = ("stage 3 (stage-1 alignment)", "stage 4 (stage-2 SFT)", "stage 5 (decode)", "stage 6 (score)",
          "stage 7 (pack)", "reload the packed zip and compare with stage 5")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    work = tmp_path_factory.mktemp("rehearsal") / "work"
    size = os.environ.get("REHEARSAL_SIZE", "real")
    cmd = ["./run.sh", "--rehearsal", "true", "--work_dir", str(work), "--size", size, "--cleanup", "true"]
    if os.environ.get("REHEARSAL_HEAVY_LOCK"):
        cmd += ["--heavy_lock", os.environ["REHEARSAL_HEAVY_LOCK"]]
    proc = subprocess.run(cmd, cwd=RECIPE, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=3 * 3600)
    report = json.loads((work / "report.json").read_text(encoding="utf-8"))
    return proc, report, work, size


@pytest.mark.slow
def test_rehearsal_passes_with_every_step(rehearsal):
    proc, report, _, size = rehearsal
    failed = [(s["name"], s.get("reason"), s.get("log_tail")) for s in report["stages"] if s["status"] != "ok"]
    assert proc.returncode == 0 and report["ok"] and not failed, (failed, proc.stderr[-3000:])
    names = [s["name"] for s in report["stages"]]
    for step in ("stage 1: data prep", "stage 2: mixes and features", "init: random real-size models + tokenizer",
                 "memory plan"):
        assert step in names
    by_name = {s["name"]: s for s in report["stages"]}
    assert all(s["wall_s"] > 0 and s["peak_rss_gb"] > 0 for s in report["stages"])
    for model in MODELS:
        for stage in STAGES:
            assert f"{model}: {stage}" in by_name, (model, stage)
        for stage in STAGES[:2]:  # training: seconds per update and the checkpoint files were measured
            step = by_name[f"{model}: {stage}"]
            assert step["train_time_s"] > 0 and step["checkpoint_bytes"], step
        if size == "real":  # the real architectures were in memory: w2v-BERT 2.0 + the LM, float32
            assert by_name[f"{model}: {STAGES[1]}"]["peak_rss_gb"] > 8
            assert by_name[f"{model}: {STAGES[1]}"]["checkpoint_bytes"]["1epoch.pth"] > 4e9


@pytest.mark.slow
def test_packed_model_reloads_to_stage5_outputs(rehearsal):
    _, report, _, _ = rehearsal
    reloads = [s for s in report["stages"] if s.get("reload")]
    assert {s["model"] for s in reloads} == set(MODELS)
    for s in reloads:
        for test_set, r in s["reload"].items():
            assert r["utterances"] > 0 and r["equal"] == r["utterances"] and not r["mismatches"], (s["model"], r)
        # a random LM's tokens decode to text (it may also stop at once, on <|endoftext|>, for some prompts)
        assert sum(r["nonempty"] for r in s["reload"].values()) > 0, s["model"]


@pytest.mark.slow
def test_every_metric_row_is_computed(rehearsal):
    _, report, work, _ = rehearsal
    scored = [s for s in report["stages"] if s.get("stage") == 6]
    assert len(scored) == len(MODELS)
    for s in scored:
        assert s["metric_rows"] > 0 and not s.get("not_computed")
        rows = json.loads((work / "recipe" / s["exp_dir"] / "results.json").read_text(encoding="utf-8"))
        assert rows and all(r["value"] is not None for r in rows)
        for metric in ("wer", "bleu", "comet", "task_confusion"):
            assert metric in s["metrics"], metric
    # the task-confusion diagnostic ran on every test set of the first model (stage 5, --diagnose_n)
    decoded = next(x for x in report["stages"] if x.get("model") == MODELS[0] and x.get("stage") == 5)
    assert decoded["test_sets"] and all(t["diagnose"] for t in decoded["test_sets"].values())


@pytest.mark.slow
def test_memory_plan_covers_every_real_config(rehearsal):
    _, report, _, _ = rehearsal
    plan = {Path(p["path"]).resolve(): p for p in report["memory_plan"]}
    for config in default_configs(RECIPE):
        entry = plan[Path(config).resolve()]
        if "tiny" in Path(config).name:
            assert "error" in entry
            continue
        assert entry["gb"]["activations"] > 0 and isinstance(entry["fits"], bool), entry["config"]
        assert entry["fits"] or entry["advice"], entry["config"]
