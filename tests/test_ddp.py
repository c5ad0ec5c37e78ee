"""Training across processes for real: 2 CPU processes (DDP over gloo) started by the recipe's own launchers.

- ``speechlm.sh --nproc 2`` (torchrun) trains the tiny model on a weighted task mix for 3 epochs, then decodes the
  test set in 2 jobs (``--inference_nj 2``). Against one process trained in-process on the same batches: the same
  weights (≤ 1e-6), each rank got its half of every one of those batches (so each utterance of an epoch was seen
  once, by one rank), and rank 1 wrote no file and no log line. The 2 decoding jobs' merged text is byte-identical
  to one job's.
- ``speechlm.sh --cmd_backend slurm --num_nodes 2`` through a stand-in ``srun`` that starts the two tasks with
  slurm's environment (tests/slurm_standin/srun), with ``--shard_optimizer true``: ``kill -9`` of the whole job in
  the middle of epoch 2, then the same command again, ends bit-identical to the torchrun run.

Dropout and SpecAugment are off in these runs: each rank draws its own masks, which one process cannot reproduce.
What each process did is recorded by tests/ddp_trace/sitecustomize.py (batches seen, files written).
"""

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO
from espnet_speechlm_plugin.tasks.resumable_trainer import load_checkpoint

TEMPLATE = REPO / "egs2" / "TEMPLATE" / "s2t1"
TESTS = Path(__file__).resolve().parent
MAX_EPOCH = 3
BATCH_SIZE = 4
# (prompt, target) of the synthetic utterances, cycled; three tasks → three mix sources
ROWS = [("en transcribe", "the red cat"), ("de translate", "die rote Katze"),
        ("en answer what colour is the cat", "red"), ("zh transcribe", "红色的猫"),
        ("it translate", "il gatto rosso"), ("en answer what colour is the dog", "Not answerable."),
        ("en transcribe", "a small green bird"), ("de translate", "zwei Hunde im Garten")]
N_UTTS = 12
# each rank draws its own dropout and SpecAugment masks: off, so that one process can take the same steps
DETERMINISTIC = ["--length_adapter_conf", "dropout=0.0", "--encoder_conf", "config_overrides.mask_time_prob=0.0",
                 "--encoder_conf", "config_overrides.conformer_conv_dropout=0.0"]


@pytest.fixture(scope="module")
def ddp_dump(tmp_path_factory):
    """12 utterances of three tasks, featurized, and a mix (one source per task) that draws each once per epoch."""
    from espnet_speechlm_plugin.bin import featurize

    root = tmp_path_factory.mktemp("ddp")
    data = root / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    files = {k: [] for k in ("wav.scp", "text", "utt2spk", "prompt")}
    groups = defaultdict(list)
    for i in range(N_UTTS):
        prompt, target = ROWS[i % len(ROWS)]
        utt = f"spk{i % 3}-{i:02d}"
        seconds = 0.6 + 0.1 * ((i * 7) % 11)
        t = np.arange(int(seconds * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (200 + 90 * i) * t * (1 + t)) + 0.01 * rng.randn(len(t))
        sf.write(root / f"{utt}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        files["wav.scp"].append(f"{utt} {root / (utt + '.wav')}")
        files["text"].append(f"{utt} {target}")
        files["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        files["prompt"].append(f"{utt} {prompt}")
        groups[prompt.split()[1]].append(utt)
    for name, lines in files.items():
        (data / name).write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    dump = root / "dump"
    assert featurize.main(["--data_dir", str(data), "--out_dir", str(dump), "--nj", "1"]) == 0
    # weights = source sizes and epoch_size = all: every utterance exactly once per epoch, in a new order
    (dump / "mix.utt2group").write_text("".join(f"{u} {g}\n" for g, us in groups.items() for u in us))
    (dump / "mix.json").write_text(json.dumps({
        "name": "mix", "utt2group": "mix.utt2group", "epoch_size": N_UTTS,
        "sources": [{"name": g, "weight": len(us)} for g, us in groups.items()]}))
    return dump


def training_options(tiny_init, dump) -> list:
    """What both runs and the one-process reference add to tests/conf/stage2_tiny.yaml."""
    return ["--encoder_conf", f"name_or_path={tiny_init}/encoder",
            "--decoder_conf", f"name_or_path={tiny_init}/decoder",
            "--length_adapter_conf", "num_heads=4", "--length_adapter_conf", "ffn_dim=128",
            "--batch_size", str(BATCH_SIZE), "--max_epoch", str(MAX_EPOCH), "--num_att_plot", "0",
            "--use_matplotlib", "false", "--seed", "3", "--train_mix", f"{dump}/mix.json", *DETERMINISTIC]


def make_recipe(root: Path, dump: Path) -> Path:
    """A recipe dir: the template's scripts linked in, dump/{train,dev,test} all the one test dump."""
    d = root / "s2t1"
    d.mkdir()
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(TEMPLATE / name)
    (d / "dump").mkdir()
    for s in ("train", "dev", "test"):
        (d / "dump" / s).symlink_to(dump)
    return d


def recipe_command(tiny_init, dump, *options) -> list:
    extra = training_options(tiny_init, dump)
    assert not any(" " in x for x in extra)  # speechlm.sh splits --stage2_args on spaces
    return ["./speechlm.sh", "--stage", "4", "--stop_stage", "4", "--skip_stage1", "true", "--tag", "ddp",
            "--stage2_config", str(REPO / "tests" / "conf" / "stage2_tiny.yaml"), "--stage2_args", " ".join(extra),
            "--test_sets", "test", *options]


def traced_env(trace: Path, watch: Path, **extra) -> dict:
    trace.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", DDP_TRACE_DIR=str(trace), DDP_TRACE_WATCH=str(watch), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "ddp_trace"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def read_trace(trace: Path) -> dict:
    """rank → list of records, over all processes of that rank (a killed run and its rerun, in time order)."""
    out = defaultdict(list)
    for path in sorted(trace.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        out[path.name.split(".")[0]] += [json.loads(line) for line in path.read_text().splitlines()]
    return out


def train_batches(records) -> list:
    """The training batches of each epoch: [[batch, ...] for epoch 1, ...] (an epoch ends at validation)."""
    epochs, current = [], None
    for r in records:
        if "batch" not in r:
            continue
        if r["train"] and current is None:
            current = []
            epochs.append(current)
        if r["train"]:
            current.append(r["batch"])
        else:
            current = None
    return epochs


@pytest.fixture(scope="module")
def torchrun_run(tiny_init, ddp_dump, tmp_path_factory):
    """speechlm.sh --nproc 2 (stage 4), then stage 5 with --inference_nj 2; returns (recipe dir, exp dir, trace)."""
    root = tmp_path_factory.mktemp("torchrun")
    d = make_recipe(root, ddp_dump)
    exp = d / "exp" / "ddp_stage2"
    env = traced_env(root / "trace", d / "exp")
    cmd = recipe_command(tiny_init, ddp_dump, "--nproc", "2", "--stop_stage", "5", "--inference_nj", "2",
                         "--decode_args", "--batch_size 4 --max_new_tokens 6")
    proc = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return d, exp, read_trace(root / "trace")


def test_two_processes_take_the_steps_of_one_process_on_the_union_batches(torchrun_run, tiny_init, ddp_dump,
                                                                           tmp_path, monkeypatch):
    from espnet_speechlm_plugin.bin import speechlm_train
    from espnet_speechlm_plugin.model.speechlm import SpeechLM

    d, exp, trace = torchrun_run
    log = (exp / "train.log").read_text(encoding="utf-8")
    assert "torch.distributed.run --standalone --nproc_per_node 2" in log
    assert "--ngpu 0 --dist_backend gloo" in log

    # one process, the same options, ESPnet's trainer in this process; its batches recorded
    seen = []
    forward = SpeechLM.forward

    def traced(model, *args, **kwargs):
        seen.append({"batch": list(kwargs["utt_id"]), "train": model.training})
        return forward(model, *args, **kwargs)

    monkeypatch.setattr(SpeechLM, "forward", traced)
    one = tmp_path / "one_process"
    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{ddp_dump}/feats.scp,speech,kaldi_ark",
                 f"--{split}_data_path_and_name_and_type", f"{ddp_dump}/prompt,prompt,text",
                 f"--{split}_data_path_and_name_and_type", f"{ddp_dump}/text,text,text",
                 f"--{split}_shape_file", f"{ddp_dump}/speech_shape"]
    speechlm_train.main(["--config", str(REPO / "tests" / "conf" / "stage2_tiny.yaml"), "--output_dir", str(one),
                         "--ngpu", "0", "--resume", "true", *data, *training_options(tiny_init, ddp_dump)])

    # every global batch of the one process was split over the ranks: rank r took items r, r+2, … of it
    union = train_batches(seen)
    per_rank = {r: train_batches(trace[r]) for r in ("0", "1")}
    assert len(union) == MAX_EPOCH and all(len(epoch) == N_UTTS // BATCH_SIZE for epoch in union)
    for e, epoch in enumerate(union):
        utts = [u for b in epoch for u in b]
        assert len(utts) == len(set(utts)) == N_UTTS, f"epoch {e + 1} does not hold every utterance once"
        for r, batches in per_rank.items():
            assert batches[e] == [b[int(r)::2] for b in epoch], f"rank {r}, epoch {e + 1}"
    assert union[0] != union[1]  # the mix is drawn anew each epoch
    # validation was split the same way: both halves together are the whole valid set, every epoch
    valid = [[r["batch"] for r in trace[k] if not r.get("train", True) and "batch" in r] for k in ("0", "1")]
    assert sorted(u for k in valid for b in k for u in b) == sorted(
        u for r in seen if not r["train"] for u in r["batch"])

    # the same weights after 3 epochs x 3 updates (ESPnet weighs each rank's token-mean loss by its tokens)
    two, single = load_checkpoint(exp / "checkpoint.pth"), load_checkpoint(one / "checkpoint.pth")
    assert two["model"].keys() == single["model"].keys()
    diff = max((two["model"][k] - single["model"][k]).abs().max().item() for k in single["model"])
    assert diff <= 1e-6, diff
    stats2, stats1 = two["reporter"]["stats"], single["reporter"]["stats"]
    for e in range(1, MAX_EPOCH + 1):
        for phase in ("train", "valid"):
            assert float(stats2[e][phase]["loss"]) == pytest.approx(float(stats1[e][phase]["loss"]), rel=1e-6)
    # per-module learning rates are the same in both optimizers
    assert [g["lr"] for g in two["optimizers"][0]["param_groups"]] == [
        g["lr"] for g in single["optimizers"][0]["param_groups"]]


def test_only_rank_0_writes_checkpoints_and_logs(torchrun_run):
    d, exp, trace = torchrun_run
    written = {r: {Path(x["write"]).name for x in records if "write" in x} for r, records in trace.items()}
    assert not written.get("1"), f"rank 1 wrote {sorted(written['1'])}"
    assert any(n.startswith(".checkpoint.pth.") for n in written["0"]) and "config.yaml" in written["0"]
    assert {"checkpoint.pth", "config.yaml", "valid.acc.best.pth", f"{MAX_EPOCH}epoch.pth"} <= {
        p.name for p in exp.iterdir()}
    log = (exp / "train.log").read_text(encoding="utf-8")
    assert re.search(r"\[[^\]]*:0/2\] .* INFO: ", log)  # rank 0 logs
    assert not re.search(r"\[[^\]]*:1/2\] .* (INFO|WARNING): ", log), "rank 1 logged"


def test_sharded_decoding_is_byte_identical_to_one_job(torchrun_run, tmp_path):
    from espnet_speechlm_plugin.bin import decode

    d, exp, _ = torchrun_run
    out = exp / "decode_valid.acc.best" / "test"
    logdir = out / "logdir"
    keys = [(logdir / f"keys.{j}.scp").read_text().split() for j in (1, 2)]
    assert sorted(keys[0] + keys[1]) == sorted(line.split()[0] for line in (d / "dump/test/prompt").open())
    assert len(keys[0]) == 2 * BATCH_SIZE and len(keys[1]) == BATCH_SIZE  # whole batches, round robin
    for j in (1, 2):
        assert (logdir / f"decode.{j}.log").stat().st_size > 0
        assert f"--key_file {logdir.relative_to(d)}/keys.{j}.scp" in (logdir / f"decode.{j}.log").read_text()
    decode.main(["--config", str(exp / "config.yaml"), "--model_file", str(exp / "valid.acc.best.pth"),
                 "--data_dir", str(d / "dump" / "test"), "--out_dir", str(tmp_path), "--batch_size", "4",
                 "--max_new_tokens", "6"])
    one_job = (tmp_path / "text").read_bytes()
    assert (out / "text").read_bytes() == one_job
    lines = one_job.decode().splitlines()
    assert len(lines) == N_UTTS and len({line.split(" ", 1)[1] for line in lines}) > 1  # not all one hypothesis


def latest_epoch(exp: Path) -> int:
    try:
        return int(os.readlink(exp / "latest.pth").split("epoch")[0])
    except OSError:
        return 0


def test_slurm_job_killed_mid_epoch_then_rerun_ends_identical_to_the_uninterrupted_run(
        torchrun_run, tiny_init, ddp_dump, tmp_path):
    reference = torchrun_run[1]
    stats = load_checkpoint(reference / "checkpoint.pth")["reporter"]["stats"]
    epoch_seconds = max(stats[e]["train"]["time"].total_seconds() + stats[e]["valid"]["time"].total_seconds()
                        for e in stats)
    d = make_recipe(tmp_path, ddp_dump)
    exp = d / "exp" / "ddp_stage2"
    env = traced_env(tmp_path / "trace", d / "exp", SRUN_LOG=str(tmp_path / "srun.log"))
    env["PATH"] = f"{TESTS / 'slurm_standin'}{os.pathsep}{env['PATH']}"
    cmd = recipe_command(tiny_init, ddp_dump, "--cmd_backend", "slurm", "--slurm_opts", "--partition cpu",
                         "--num_nodes", "2", "--nproc", "1")
    cmd[cmd.index("--stage2_args") + 1] += " --shard_optimizer true"

    # the whole job (recipe, srun, both tasks) killed a random moment into epoch 2
    fraction = random.Random(20251204).uniform(0.1, 0.9)
    job = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        while job.poll() is None and latest_epoch(exp) < 1:
            time.sleep(0.01)
        time.sleep(fraction * epoch_seconds)
        os.killpg(job.pid, signal.SIGKILL)
    finally:
        job.wait()
    killed_at = latest_epoch(exp)
    assert job.returncode == -signal.SIGKILL and killed_at < MAX_EPOCH, "the job ended before it was killed"

    proc = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    log = (exp / "train.log").read_text(encoding="utf-8")
    assert "The training was resumed using" in log
    assert "--shard_optimizer: this rank keeps the optimizer state of" in log

    # two srun steps (killed, rerun), each starting two tasks on two "nodes" that met through a file
    calls = [re.sub(r"\.dist_init_\S+", ".dist_init_X", c) for c in (tmp_path / "srun.log").read_text().splitlines()]
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0].startswith("--partition cpu --nodes 2 --ntasks-per-node 1 --cpus-per-task ")
    assert "--ngpu 0 --dist_backend gloo --dist_launcher slurm --dist_init_method file://" in calls[0]
    trace = read_trace(tmp_path / "trace")
    assert all(train_batches(trace[r]) for r in ("0", "1"))
    assert not [x for x in trace["1"] if "write" in x]

    a, b = load_checkpoint(reference / "checkpoint.pth"), load_checkpoint(exp / "checkpoint.pth")
    assert a["reporter"]["epoch"] == b["reporter"]["epoch"] == MAX_EPOCH
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # the optimizer state gathered from the two shards is the unsharded run's, tensor for tensor
    sa, sb = a["optimizers"][0], b["optimizers"][0]
    assert [(g["name"], g["lr"]) for g in sa["param_groups"]] == [(g["name"], g["lr"]) for g in sb["param_groups"]]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        for key, value in sa["state"][i].items():
            assert torch.equal(value, sb["state"][i][key]), (i, key)
    for e in range(1, MAX_EPOCH + 1):
        for phase in ("train", "valid"):
            assert float(a["reporter"]["stats"][e][phase]["loss"]) == float(b["reporter"]["stats"][e][phase]["loss"])
    for link in ("valid.loss.best.pth", "valid.acc.best.pth", "latest.pth"):
        assert os.readlink(reference / link) == os.readlink(exp / link), link
    assert not list(exp.glob(".dist_init_*"))  # the killed run's rendezvous file is gone too
