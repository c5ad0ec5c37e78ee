"""egs2/iwslt25_if/s2t1: stages 1–2 on fixture corpora in every real layout, the mixes' wiring, --ngpu/--nj/slurm
reaching the right jobs, and the multi-GPU / DeepSpeed / LoRA configs agreeing with the single-GPU ones."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from espnet_speechlm_plugin.data.mix import MixSpec, load_mix_config

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "iwslt25_if" / "s2t1"
CONF = RECIPE / "conf"


def run(recipe: Path, *args: str, env=None, check=True) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    proc = subprocess.run(["./run.sh", "--nj", "1", *args], cwd=recipe, env=env, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A fresh recipe dir (the repo's recipe files linked in) after stages 1–2 on fixture corpora."""
    root = tmp_path_factory.mktemp("iwslt")
    corpora = root / "corpora"
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "espnet_speechlm_plugin.bin.make_fixture_corpora",
                    str(corpora)], check=True, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    d = root / "s2t1"
    d.mkdir()
    for name in ("run.sh", "conf", "local", "db.sh", "speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(os.path.realpath(RECIPE / name))
    return d, corpora, run(d, "--stage", "1", "--stop_stage", "2", "--corpora_root", str(corpora))


def test_stages_1_2_give_data_dirs_mixes_and_features(recipe):
    d, _, log = recipe
    assert "Stage 1: " in log and "Stage 2: " in log
    # every dir the two mixes name was prepared from the fixture corpora
    for mix in ("train_mix_stage1", "train_mix_stage2"):
        config = load_mix_config(CONF / f"{mix}.yaml")
        for entry in config.train + config.valid:
            assert (d / entry.dir / "wav.scp").stat().st_size > 0, entry.dir
        spec = MixSpec.load(d / "data" / "train" / f"{mix}.json")
        assert set(spec.groups) == {e.name for e in config.train} and all(spec.groups.values())
    assert "train_mix_stage2" in (d / "data" / "train" / "mix_report.txt").read_text(encoding="utf-8")
    assert "duration caps max_duration 45.0 s" in log  # the report is printed, not only written
    for dset in ("train", "dev", "acl6060_en_dev", "acl6060_en_de_dev", "acl6060_en_zh_dev"):
        dump = d / "dump" / dset
        utts = (d / "data" / dset / "wav.scp").read_text(encoding="utf-8").splitlines()
        feats = (dump / "feats.scp").read_text(encoding="utf-8").splitlines()
        assert len(feats) == len(utts) > 0, dset
        for line in (dump / "speech_shape").read_text(encoding="utf-8").splitlines():
            assert int(line.split()[1].split(",")[0]) > 0 and line.endswith(",160")
    # the same clip in several tasks (cv_en / covost2_en_de / covost2_en_zh, SQA questions on one passage) is
    # stored once: fewer distinct matrices than utterances
    scp = dict(line.split() for line in (d / "dump/train/feats.scp").read_text(encoding="utf-8").splitlines())
    wav = dict(line.split(maxsplit=1) for line in (d / "data/train/wav.scp").read_text(encoding="utf-8").splitlines())
    assert len(set(scp.values())) == len(set(wav.values())) < len(scp)
    shared = [u for u in scp if u.startswith("covost2_en_de_train-")]
    assert shared and any(scp[u] in {scp[v] for v in scp if v.startswith("cv_en_train-")} for u in shared)


def _fake_srun(tmp_path: Path, execute: bool) -> dict:
    """An `srun` on PATH that records its arguments and, if asked, runs the command after its options."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text('#!/usr/bin/env bash\necho "$*" >> "${SRUN_LOG}"\n'
                    'while [[ "${1:-}" == --* ]]; do shift 2; done\n'
                    + ('exec "$@"\n' if execute else "exit 0\n"), encoding="utf-8")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_LOG": str(tmp_path / "srun.log")}


def test_slurm_backend_runs_features_as_srun_steps(recipe, tmp_path):
    d, _, _ = recipe
    env = _fake_srun(tmp_path, execute=True)
    log = run(d, "--stage", "2", "--stop_stage", "2", "--cmd_backend", "slurm", "--slurm_opts", "--partition cpu",
              "--test_sets", "", env=env)
    calls = (tmp_path / "srun.log").read_text(encoding="utf-8").splitlines()
    assert len(calls) == 2 and all(c.startswith("--partition cpu --ntasks 1 --cpus-per-task 1 ") for c in calls)
    assert all("espnet_speechlm_plugin.bin.featurize" in c and "--gres" not in c for c in calls)
    assert "is complete" in (d / "dump/log/featurize.train.log").read_text(encoding="utf-8")
    assert "Done (stages 2..2)" in log


def test_training_jobs_get_gpus_ddp_mixes_and_configs(recipe, tmp_path):
    d, _, _ = recipe
    env = _fake_srun(tmp_path, execute=False)
    run(d, "--stage", "3", "--stop_stage", "4", "--ngpu", "2", "--cmd_backend", "slurm", "--model", "qwen2.5-1.5b",
        env=env)
    run(d, "--stage", "4", "--stop_stage", "4", "--lora", "true", "--cmd_backend", "slurm", env=env)
    stage1, stage2, lora = (tmp_path / "srun.log").read_text(encoding="utf-8").splitlines()
    for call in (stage1, stage2):  # one srun step of 2 tasks, one per GPU (tests/test_ddp.py runs this path on CPU)
        assert "--nodes 1 --ntasks-per-node 2 " in call and "--gres gpu:2" in call
        assert "--ngpu 1 --dist_backend nccl --dist_launcher slurm --dist_init_method file://" in call
    assert "--config conf/stage1_qwen2.5-1.5b.yaml --output_dir exp/qwen2.5-1.5b_stage1" in stage1
    assert "--train_mix data/train/train_mix_stage1.json" in stage1 and "--init_param" not in stage1
    assert "--config conf/stage2_qwen2.5-1.5b.yaml --output_dir exp/qwen2.5-1.5b_stage2" in stage2
    assert "--init_param exp/qwen2.5-1.5b_stage1/valid.loss.best.pth --train_mix data/train/train_mix_stage2.json" in (
        stage2)
    for part in ("--gres gpu:1", "--ngpu 1 --resume", "--config conf/stage2_qwen2.5-0.5b_lora.yaml",
                 "--output_dir exp/qwen2.5-0.5b_lora_stage2", "--init_param exp/qwen2.5-0.5b_stage1/valid.loss.best"):
        assert part in lora, part
    assert "--dist_launcher" not in lora
    out = run(d, "--model", "gpt-9", check=False)
    assert "--model gpt-9: no conf/stage1_gpt-9.yaml" in out
    assert "--lora true|false" in run(d, "--help")


def _yaml(name):
    with open(CONF / name, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _diff(a: dict, b: dict, prefix=""):
    keys = set()
    for k in a.keys() | b.keys():
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys |= _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.add(f"{prefix}{k}")
    return keys


@pytest.mark.parametrize("size", ("qwen2.5-0.5b", "qwen2.5-1.5b", "phi-4-mini"))
def test_lora_configs_differ_from_stage2_only_by_lora(size):
    full, lora = _yaml(f"stage2_{size}.yaml"), _yaml(f"stage2_{size}_lora.yaml")
    assert _diff(full, lora) == {"decoder_conf.lora", "optim_conf.param_groups.decoder",
                                 "optim_conf.param_groups.decoder.lm.model.embed_tokens"}
    assert lora["optim_conf"]["param_groups"]["decoder.lm.model.embed_tokens"] == full["optim_conf"]["param_groups"][
        "decoder"]
    assert lora["decoder_conf"]["lora"]["r"] == 16 and lora["decoder_conf"]["lora"]["train_embeddings"] is True


def test_two_gpu_config_keeps_the_update_and_the_schedule():
    one, two = _yaml("stage2_qwen2.5-1.5b.yaml"), _yaml("stage2_qwen2.5-1.5b_2gpu.yaml")
    assert _diff(one, two) == {"batch_bins", "accum_grad", "num_iters_per_epoch"}
    # audio per update (batch_bins is the batch of all GPUs together) and the number of updates are unchanged
    assert one["batch_bins"] * one["accum_grad"] == two["batch_bins"] * two["accum_grad"]
    for c in (one, two):
        assert c["max_epoch"] * c["num_iters_per_epoch"] // c["accum_grad"] == c["scheduler_conf"]["T_0"]


def test_deepspeed_json_has_what_espnet_and_deepspeed_read_and_matches_its_config():
    config = _yaml("stage1_qwen2.5-1.5b_deepspeed.yaml")
    assert config["use_deepspeed"] is True
    path = RECIPE / config["deepspeed_config"]  # relative to the recipe dir, where training runs
    ds = json.loads(path.read_text(encoding="utf-8"))
    # ESPnet's DeepSpeedTrainer: the data dtype comes from the "bf16"/"fp16"/"amp" key; the rest goes to deepspeed
    assert ds["bf16"]["enabled"] is True and "fp16" not in ds
    assert ds["zero_optimization"]["stage"] == 2
    base = _yaml("stage1_qwen2.5-1.5b.yaml")
    assert _diff(base, config) == {"use_deepspeed", "deepspeed_config"}
    opt = ds["optimizer"]
    assert opt["type"] == "AdamW" and opt["params"]["betas"] == base["optim_conf"]["betas"]
    assert opt["params"]["lr"] == base["optim_conf"]["lr"] and opt["params"]["weight_decay"] == base["optim_conf"][
        "weight_decay"]
    assert set(base["optim_conf"]["param_groups"].values()) == {opt["params"]["lr"]}  # one LR: what DeepSpeed does
    assert ds["gradient_accumulation_steps"] == base["accum_grad"] and ds["gradient_clipping"] == base["grad_clip"]
    sched = ds["scheduler"]
    assert sched["type"] == "WarmupCosineLR" and sched["params"]["total_num_steps"] == base["scheduler_conf"]["T_0"]


def test_deepspeed_with_per_module_learning_rates_is_refused(tiny_init):
    from conftest import task_args

    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = task_args(tiny_init, "--use_deepspeed", "true", "--deepspeed_config", "ds.json")
    args.distributed = True
    args.optim_conf = dict(lr=2.0e-4, param_groups={"projector": 2.0e-4, "encoder": 6.0e-6})
    model = SpeechLMTask.build_model(args)
    with pytest.raises(ValueError, match=r"one learning rate for all parameters.*Train with DDP"):
        SpeechLMTask.build_optimizers(args, model)
    args.optim_conf = dict(lr=2.0e-4, param_groups={"projector": 2.0e-4})  # one LR: fine
    assert SpeechLMTask.build_optimizers(args, model)
