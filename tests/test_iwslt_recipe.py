"""egs2/iwslt25_if/s2t1: stages 1–2 on fixture corpora in every real layout, the mixes' wiring (each training stage
validates on its own tasks, no valid or test clip is trained on, every test set the paper reports on is prepared
and scores with its task's metrics), --ngpu/--nj/slurm reaching the right jobs, and the multi-GPU / DeepSpeed /
LoRA configs agreeing with the single-GPU ones."""

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
# where the paper's tasks are reported: the IWSLT 2025 dev set, LibriSpeech (ASR), CoVoST 2 and FLEURS (ST),
# Spoken-SQuAD (spoken QA)
TEST_SETS = ["acl6060_en_dev", "acl6060_en_de_dev", "acl6060_en_zh_dev", "librispeech_en_test-clean",
             "librispeech_en_test-other", "covost2_en_de_test", "covost2_en_zh_test", "fleurs_en_it_test",
             "spokensquad_en_test"]
VALID_SETS = ["dev_train_mix_stage1", "dev_train_mix_stage2"]


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
    # the valid set of each stage and every test set are featurized, in one job after the training set's
    first = (d / "dump/log/featurize.eval.log").read_text(encoding="utf-8").splitlines()[0]
    assert first.split("--data_dir ")[1].split(" --out_dir")[0].split() == [f"data/{s}" for s in VALID_SETS + TEST_SETS]
    for dset in ["train"] + VALID_SETS + TEST_SETS:
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


def _column(path: Path, field: int) -> set:
    return {line.split()[field] for line in path.read_text(encoding="utf-8").splitlines()}


def test_each_training_stage_validates_on_its_own_tasks(recipe):
    """Stage 1 (ASR) picks the checkpoint that starts stage 2 on ASR data only; stage 2 on its own dev sets, with the
    Spoken-SQuAD dev split carved from train (spoken_test is a test set)."""
    d, _, _ = recipe
    assert _column(d / "dump/dev_train_mix_stage1/prompt", 2) == {"transcribe"}
    assert _column(d / "dump/dev_train_mix_stage2/prompt", 2) == {"translate", "answer"}
    sources = {u.split("-", 1)[0] for u in _column(d / "dump/dev_train_mix_stage2/prompt", 0)}
    assert sources == {"covost2_en_de_dev", "covost2_en_zh_dev", "fleurs_en_it_dev", "spokensquad_en_dev"}
    assert not (d / "data/dev").exists()  # no merged valid set of every task


def test_no_valid_or_test_clip_is_trained_on(recipe):
    """CoVoST 2's dev and test clips are Common Voice training clips (and one test sentence was recorded twice by
    its speaker): stage 2 removes them from every training source, by file and by sentence + speaker, and counts."""
    d, _, _ = recipe
    train_audio = set(table_values(d / "data/train/wav.scp"))
    for dset in VALID_SETS + TEST_SETS:
        assert not train_audio & set(table_values(d / "data" / dset / "wav.scp")), dset
    dropped = dict(line.split(" ", 1) for line in (d / "data/train/train_mix_stage1.dropped").read_text(
        encoding="utf-8").splitlines())
    removed = {u.rsplit("-", 1)[1]: why for u, why in dropped.items() if u.startswith("cv_en_train-")}
    assert removed.keys() == {"common_voice_en_104", "common_voice_en_105", "common_voice_en_107"}
    assert removed["common_voice_en_104"].startswith("evaluation clip: same audio file as") and (
        removed["common_voice_en_104"].endswith("of data/covost2_en_de_dev"))
    assert removed["common_voice_en_107"].startswith("evaluation clip: same sentence and speaker as")
    report = (d / "data/train/mix_report.txt").read_text(encoding="utf-8")
    overlap = report.split("\n\n")[-1].splitlines()
    row = next(line.split() for line in overlap if line.startswith("cv_en_train "))
    assert row[1:6] == ["7", "3", "2", "0", "1"]  # utterances, removed, same file, same clip, same sentence
    assert all(f"data/{s}" in overlap[0] for s in TEST_SETS)


def test_every_test_set_scores_with_its_tasks_metrics(recipe, tmp_path):
    """Stage 6 on the recipe's test sets (hypotheses = references): WER on LibriSpeech and ACL 60/60 ASR, BLEU and
    chrF on CoVoST 2 / FLEURS / ACL 60/60 ST, exact match, unanswerable accuracy and BERTScore on Spoken-SQuAD."""
    d, _, _ = recipe
    for dset in TEST_SETS:
        (tmp_path / "hyp" / dset).mkdir(parents=True)
        (tmp_path / "hyp" / dset / "text").write_text((d / "dump" / dset / "text").read_text(encoding="utf-8"),
                                                      encoding="utf-8")
    proc = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "espnet_speechlm_plugin.bin.score", "--decode_dir",
                           str(tmp_path / "hyp"), "--ref_dir", "dump", "--test_sets", *TEST_SETS, "--out_dir",
                           str(tmp_path / "out"), "--mcif_track", "none"], cwd=d, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "out/results.json").read_text(encoding="utf-8"))
    metrics = {}
    for r in rows:
        metrics.setdefault(r["test_set"], {})[r["metric"]] = r["value"]
    for dset in ("librispeech_en_test-clean", "librispeech_en_test-other", "acl6060_en_dev"):
        assert metrics[dset]["wer"] == 0.0, dset
    for dset in ("covost2_en_de_test", "covost2_en_zh_test", "fleurs_en_it_test", "acl6060_en_de_dev"):
        assert metrics[dset]["bleu"] == pytest.approx(100.0) and "comet" in metrics[dset], dset
    qa = metrics["spokensquad_en_test"]
    assert qa["exact_match"] == 1.0 and qa["unanswerable_acc"] == 1.0 and "bertscore_f1" in qa


def table_values(path: Path) -> list:
    return [line.split(maxsplit=1)[1] for line in path.read_text(encoding="utf-8").splitlines()]


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
              env=env)
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
    # each stage validates on its own valid set
    assert "--valid_data_path_and_name_and_type dump/dev_train_mix_stage1/feats.scp,speech,kaldi_ark" in stage1
    assert "--valid_shape_file dump/dev_train_mix_stage1/speech_shape" in stage1 and "dev_train_mix_stage2" not in stage1
    assert "--valid_data_path_and_name_and_type dump/dev_train_mix_stage2/text,text,text" in stage2
    assert "dev_train_mix_stage1" not in stage2 and "dump/dev/" not in stage2
    assert "--config conf/stage2_qwen2.5-1.5b.yaml --output_dir exp/qwen2.5-1.5b_stage2" in stage2
    assert "--init_param exp/qwen2.5-1.5b_stage1/valid.loss.best.pth " in stage2
    assert "--train_mix data/train/train_mix_stage2.json" in stage2
    for part in ("--gres gpu:1", "--ngpu 1 --resume", "--config conf/stage2_qwen2.5-0.5b_lora.yaml",
                 "--output_dir exp/qwen2.5-0.5b_lora_stage2", "--init_param exp/qwen2.5-0.5b_stage1/valid.loss.best"):
        assert part in lora, part
    assert "--dist_launcher" not in lora
    out = run(d, "--model", "gpt-9", check=False)
    assert "--model gpt-9: no conf/stage1_gpt-9.yaml" in out
    assert "  --lora false\n      true|false: stage 4 with LoRA" in run(d, "--help")


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
