"""The parts of multi-process training and sharded jobs, each on its own (fast; tests/test_ddp.py runs them whole).

- how every epoch is split over DDP ranks, by the weighted mix sampler and by each of ESPnet's batch samplers;
- the loss weight that makes N ranks take one process's step on the union batch;
- ZeRO stage 1 (``--shard_optimizer``): per-module learning rates and a state dict that moves to and from an
  unsharded optimizer;
- cmd.sh's job arrays and multi-task slurm steps, through the stand-in srun; the training launch lines speechlm.sh
  writes for GPUs on one node and on several;
- the key-file split and the merge of sharded decoding.
"""

import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, make_data_dir, task_args
from espnet_speechlm_plugin.data.mix import MixIterFactory, MixSpec, draw_mix

TEMPLATE = REPO / "egs2" / "TEMPLATE" / "s2t1"
STANDIN = Path(__file__).resolve().parent / "slurm_standin"


# ---------------------------------------------------------------- sampling: every epoch split over the ranks

class _Keys:
    """A dataset whose items are their keys, so a DataLoader yields the utterance ids of each batch."""

    def __getitem__(self, key):
        return key


def _rank_batches(factory: MixIterFactory, epoch: int):
    loader = factory.build_iter(epoch)
    return [list(b) for b in loader]


def _mix(tmp_path, groups, weights, epoch_size):
    import json

    (tmp_path / "m.utt2group").write_text("".join(f"{u} {g}\n" for g, us in groups.items() for u in us))
    (tmp_path / "m.json").write_text(json.dumps({"name": "m", "utt2group": "m.utt2group", "epoch_size": epoch_size,
                                                 "sources": [{"name": g, "weight": w} for g, w in weights.items()]}))
    return MixSpec.load(tmp_path / "m.json")


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("iters", [None, 4])
def test_mix_sampler_gives_each_rank_its_share_of_every_batch(tmp_path, world_size, iters):
    groups = {"asr": [f"asr-{i}" for i in range(40)], "st": [f"st-{i}" for i in range(13)]}
    # st is smaller than its share: repeated within an epoch; asr larger: subsampled
    spec = _mix(tmp_path, groups, {"asr": 0.5, "st": 0.5}, epoch_size=50)
    lengths = {u: 100 + (7 * i) % 90 for i, u in enumerate(groups["asr"] + groups["st"])}

    def factory(rank):
        return MixIterFactory(_Keys(), spec, lengths, batch_bins=1000, seed=5, num_iters_per_epoch=iters,
                              collate_fn=lambda items: items, world_size=world_size, rank=rank)

    ranks = [factory(r) for r in range(world_size)]
    for epoch in (1, 2, 3):
        union = ranks[0].batches(epoch)
        shards = [_rank_batches(f, epoch) for f in ranks]
        assert all(len(s) == len(union) for s in shards)  # every rank takes every step
        for i, batch in enumerate(union):
            parts = [s[i] for s in shards]
            assert all(parts), f"epoch {epoch} step {i}: a rank got an empty batch"
            assert sorted(u for p in parts for u in p) == sorted(batch)  # split, nothing lost, nothing twice
            for r, part in enumerate(parts):
                assert part == batch[r::world_size]
        if iters is None:  # a whole mix epoch: the ranks together see the epoch's draw, each drawn item once
            seen = sorted(u for s in shards for b in s for u in b)
            assert seen == sorted(draw_mix(spec.groups, spec.weights, spec.epoch_size, 5, epoch))


@pytest.fixture(scope="module")
def small_dump(tmp_path_factory):
    from espnet_speechlm_plugin.bin import featurize

    root = tmp_path_factory.mktemp("parts")
    assert featurize.main(["--data_dir", str(make_data_dir(root)), "--out_dir", str(root / "dump"), "--nj", "1"]) == 0
    return root / "dump"


@pytest.mark.parametrize("batch_type", ["unsorted", "sorted", "folded", "numel", "length"])
def test_espnet_batch_samplers_give_each_rank_its_share_of_every_batch(tiny_init, small_dump, batch_type,
                                                                       monkeypatch):
    """ESPnet's own iterators (the train set without --train_mix, and every valid set), read through our task."""
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{small_dump}/feats.scp,speech,kaldi_ark",
                 f"--{split}_data_path_and_name_and_type", f"{small_dump}/prompt,prompt,text",
                 f"--{split}_data_path_and_name_and_type", f"{small_dump}/text,text,text",
                 f"--{split}_shape_file", f"{small_dump}/speech_shape"]
    frames = sorted(int(line.split()[1].split(",")[0]) for line in (small_dump / "speech_shape").open())
    args = task_args(tiny_init, "--batch_type", batch_type, "--batch_size", "2", "--fold_length", "80",
                     "--batch_bins", str(frames[-1] * 160 * 2 if batch_type == "numel" else frames[-1] * 2),
                     "--seed", "7", *data)
    utts = sorted(line.split()[0] for line in (small_dump / "prompt").open())

    def epochs(mode, world_size, rank):
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda *a: world_size)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda *a: rank)
        factory = SpeechLMTask.build_iter_factory(args, DistributedOption(distributed=world_size > 1), mode)
        return [[list(keys) for keys, _ in factory.build_iter(e)] for e in (1, 2)]

    for mode in ("train", "valid"):
        whole = epochs(mode, 1, 0)
        ranks = [epochs(mode, 2, r) for r in (0, 1)]
        for e, batches in enumerate(whole):
            assert sorted(u for b in batches for u in b) == utts  # one process: every utterance once an epoch
            assert len(ranks[0][e]) == len(ranks[1][e]) == len(batches)
            for i, batch in enumerate(batches):
                assert ranks[0][e][i] + ranks[1][e][i] == batch[0::2] + batch[1::2], (mode, e, i)
                assert not set(ranks[0][e][i]) & set(ranks[1][e][i])


# ---------------------------------------------------------------- the loss weight: N ranks = one union batch

def make_batch(args, seed=0):
    """Five preprocessed items of different lengths, the collate function and their batch."""
    import numpy as np

    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    rows = [(120, "en transcribe", "the red cat sees two dogs"), (75, "de translate", "die rote Katze"),
            (96, "zh answer what colour is the cat", "红色"), (61, "en answer what colour is the bird",
                                                              "Not answerable."), (88, "it translate", "il gatto")]
    rng = np.random.RandomState(seed)
    pre = SpeechLMTask.build_preprocess_fn(args, train=False)
    items = [(f"utt{i}", pre(f"utt{i}", {"speech": rng.randn(t, 160).astype(np.float32), "prompt": p, "text": y}))
             for i, (t, p, y) in enumerate(rows)]
    collate = SpeechLMTask.build_collate_fn(args, train=False)
    return items, collate, collate(items)[1]


def test_ranks_weighted_by_target_tokens_give_the_union_batch_loss_and_gradient(tiny_init):
    """ESPnet's DDP step is sum_r(loss_r * weight_r) / sum_r(weight_r): with the number of target tokens as the
    weight, that is the token mean over the union batch, i.e. what one process computes on it."""
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = task_args(tiny_init)
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args).eval()  # eval: no dropout, which differs per rank anyway
    items, collate, union = make_batch(args)

    def loss_and_grad(batch):
        model.zero_grad()
        loss, _, weight = model(**batch)
        loss.backward()
        return loss.detach(), weight, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, weight, grad = loss_and_grad(union)
    assert int(weight) == int((union["text_lengths"]).sum())  # every target token (eos included) carries loss
    parts = [loss_and_grad(collate(items[r::2])[1]) for r in (0, 1)]
    total = sum(w for _, w, _ in parts)
    assert total == weight
    combined = sum(part_loss * w for part_loss, w, _ in parts) / total
    assert combined.item() == pytest.approx(loss.item(), rel=1e-6)
    # weighed by utterances instead (ESPnet's usual batch-size weight), the ranks would train on another loss
    by_utterance = (parts[0][0] * 3 + parts[1][0] * 2) / 5
    assert abs(by_utterance.item() - loss.item()) > 1e-3
    for name, g in grad.items():
        g_ranks = sum(part_grad[name] * w for _, w, part_grad in parts) / total
        torch.testing.assert_close(g_ranks, g, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- ZeRO stage 1 with per-module learning rates

@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group: ZeroRedundancyOptimizer needs one (test_ddp.py runs it on two ranks)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_sharded_optimizer_keeps_module_learning_rates_and_a_plain_state_dict(tiny_init, process_group):
    from torch.distributed.optim import ZeroRedundancyOptimizer

    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = task_args(tiny_init, "--optim", "adamw", "--shard_optimizer", "true")
    args.optim_conf = dict(lr=1.0e-3, weight_decay=0.01,
                           param_groups={"encoder": 3.0e-4, "decoder": 5.0e-4, "projector": 1.0e-3})
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args).eval()
    same = SpeechLMTask.build_model(args).eval()
    same.load_state_dict(model.state_dict())
    args.distributed = False
    (plain,) = SpeechLMTask.build_optimizers(args, same)
    assert not isinstance(plain, ZeroRedundancyOptimizer)  # one process: nothing to shard
    args.distributed = True
    (sharded,) = SpeechLMTask.build_optimizers(args, model)
    assert isinstance(sharded, ZeroRedundancyOptimizer)
    groups = [(g["name"], g["lr"], len(g["params"])) for g in sharded.param_groups]
    assert groups == [(g["name"], g["lr"], len(g["params"])) for g in plain.param_groups]
    assert {name: lr for name, lr, _ in groups} == {"encoder": 3.0e-4, "decoder": 5.0e-4, "projector": 1.0e-3,
                                                    "rest": 1.0e-3}
    _, _, batch = make_batch(args)
    for _ in range(2):
        for m, opt in ((model, sharded), (same, plain)):
            opt.zero_grad()
            m(**batch)[0].backward()
            opt.step()
    for (name, p), q in zip(model.named_parameters(), same.parameters()):
        assert torch.equal(p, q), name
    sharded.consolidate_state_dict(to=0)
    state = sharded.state_dict()
    reference = plain.state_dict()
    assert state["state"].keys() == reference["state"].keys()
    for i, values in reference["state"].items():
        for key, value in values.items():
            assert torch.equal(state["state"][i][key], value), (i, key)
    # a checkpoint moves between sharded and unsharded runs
    plain.load_state_dict(state)
    sharded.load_state_dict(reference)
    assert [g["lr"] for g in sharded.param_groups] == [g["lr"] for g in plain.param_groups]


# ---------------------------------------------------------------- cmd.sh and the launch lines of speechlm.sh

def _bash(script: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    full = dict(os.environ, PATH=f"{STANDIN}{os.pathsep}{os.environ['PATH']}", **env)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def test_run_cmd_job_arrays_and_multi_task_steps_on_slurm(tmp_path):
    srun_log = tmp_path / "srun.log"
    show = "import os, sys; print(sys.argv[1], *(os.environ[k] for k in ('SLURM_PROCID', 'SLURM_LOCALID', " \
           "'SLURM_NODEID', 'SLURM_NTASKS')))"
    out = _bash(f""". {TEMPLATE}/cmd.sh
        run_cmd --gpu 1 --nj 2 JOB=1:3 logs/job.JOB.log python3 -c "{show}" JOB
        run_cmd --gpu 2 --nodes 2 --tasks_per_node 2 logs/step.log python3 -c "{show}" step
        run_cmd JOB=1:3 logs/bad.JOB.log python3 -c "import sys; sys.exit(JOB == 2)" && exit 9
        echo done""", tmp_path, cmd_backend="slurm", slurm_opts="--partition p", SRUN_LOG=str(srun_log))
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    assert "1 of 3 jobs failed: logs/bad.2.log" in out.stderr
    calls = srun_log.read_text().splitlines()
    assert sorted(calls[:3]) == [f"--partition p --ntasks 1 --cpus-per-task 2 --gres gpu:1 python3 -c {show} {j}"
                                 for j in (1, 2, 3)]  # side by side: in any order
    assert calls[3].startswith("--partition p --nodes 2 --ntasks-per-node 2 --cpus-per-task 1 --gres gpu:2 ")
    for j in (1, 2, 3):
        assert (tmp_path / f"logs/job.{j}.log").read_text().splitlines()[-1] == f"{j} 0 0 0 1"
    tasks = sorted((tmp_path / "logs/step.log").read_text().splitlines()[1:])
    assert tasks == ["step 0 0 0 4", "step 1 1 0 4", "step 2 0 1 4", "step 3 1 1 4"]
    # locally the jobs run side by side, each into its own log
    out = _bash(f'. {TEMPLATE}/cmd.sh; run_cmd JOB=1:2 logs/local.JOB.log echo JOB', tmp_path)
    assert out.returncode == 0 and (tmp_path / "logs/local.2.log").read_text().splitlines() == ["# echo 2", "2"]


@pytest.fixture
def recipe(tmp_path):
    d = tmp_path / "s2t1"
    d.mkdir()
    for name in ("speechlm.sh", "path.sh", "cmd.sh", "utils"):
        (d / name).symlink_to(TEMPLATE / name)
    bin_dir = tmp_path / "bin"  # an srun that only records its command line
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\necho "$*" >> "${SRUN_LOG}"\n')
    (bin_dir / "srun").chmod((bin_dir / "srun").stat().st_mode | stat.S_IEXEC)
    return d, {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SRUN_LOG": str(tmp_path / "srun.log")}


def _train_line(recipe, *options) -> str:
    d, env = recipe
    proc = subprocess.run(["./speechlm.sh", "--stage", "4", "--stop_stage", "4", "--skip_stage1", "true",
                           "--stage2_config", "conf.yaml", *options], cwd=d, env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return Path(env["SRUN_LOG"]).read_text().splitlines()[-1]


def test_gpu_training_lines_for_one_node_and_several(recipe):
    """What a GPU cluster receives (the stand-in records it; the CPU runs in test_ddp.py take the same path)."""
    one = _train_line(recipe, "--cmd_backend", "slurm", "--ngpu", "4", "--nj", "8")
    assert one.startswith("--time 24:00:00 --nodes 1 --ntasks-per-node 4 --cpus-per-task 8 --gres gpu:4 ")
    assert "--ngpu 1 --dist_backend nccl --dist_launcher slurm --dist_init_method file:///" in one
    assert "/exp/speechlm_stage2/.dist_init_" in one and "--multiprocessing_distributed" not in one
    several = _train_line(recipe, "--cmd_backend", "slurm", "--ngpu", "8", "--num_nodes", "4")
    assert several.startswith("--time 24:00:00 --nodes 4 --ntasks-per-node 8 --cpus-per-task 2 --gres gpu:8 ")
    single = _train_line(recipe, "--cmd_backend", "slurm", "--ngpu", "1")
    assert single.startswith("--time 24:00:00 --ntasks 1 --cpus-per-task 2 --gres gpu:1 ")
    assert "--ngpu 1 --resume true" in single and "--dist_" not in single


def test_several_nodes_need_slurm(recipe):
    d, env = recipe
    proc = subprocess.run(["./speechlm.sh", "--stage", "4", "--stop_stage", "4", "--skip_stage1", "true",
                           "--num_nodes", "2", "--ngpu", "2"], cwd=d, env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--num_nodes 2 needs --cmd_backend slurm" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- sharded decoding: split and merge

def _test_set(tmp_path, n=11):
    d = tmp_path / "test"
    d.mkdir()
    utts = [f"u{i:02d}" for i in range(n)]
    (d / "prompt").write_text("".join(f"{u} en transcribe\n" for u in reversed(utts)))
    # two pairs of equal lengths: ties keep the prompt file's order
    (d / "speech_shape").write_text("".join(f"{u} {100 + 10 * (i // 2)},160\n" for i, u in enumerate(utts)))
    return d, utts


def test_split_gives_each_job_whole_batches_of_the_one_job_batching(tmp_path):
    from espnet_speechlm_plugin.bin import decode_shards
    from espnet_speechlm_plugin.data.shards import decode_batches, read_key_file, read_lengths

    d, utts = _test_set(tmp_path)
    order = list(reversed(utts))
    batches = decode_batches(order, read_lengths(d), 3)
    assert decode_shards.main(["split", "--data_dir", str(d), "--nj", "2", "--out_dir", str(tmp_path / "log"),
                               "--batch_size", "3", "--max_new_tokens", "9"]) == 0  # decoding options pass by
    keys = [read_key_file(tmp_path / "log" / f"keys.{j}.scp") for j in (1, 2)]
    assert sorted(keys[0] + keys[1]) == sorted(utts)
    for j, job_keys in enumerate(keys):
        assert job_keys == [u for u in order if u in set(job_keys)]  # the prompt file's order
        # the job batches its share exactly where one job cuts the whole set
        assert decode_batches(job_keys, read_lengths(d), 3) == batches[j::2]
    (tmp_path / "log" / "keys.3.scp").write_text("u00\n")  # left by an earlier split into 3 jobs
    assert decode_shards.main(["split", "--data_dir", str(d), "--nj", "2", "--out_dir", str(tmp_path / "log")]) == 0
    assert not (tmp_path / "log" / "keys.3.scp").exists()


def test_merge_checks_every_job_and_writes_like_one_job(tmp_path, capsys):
    from espnet_speechlm_plugin.bin import decode_shards
    from espnet_speechlm_plugin.data.kaldi import write_kaldi_text

    d, utts = _test_set(tmp_path)
    log = tmp_path / "log"
    decode_shards.main(["split", "--data_dir", str(d), "--nj", "3", "--out_dir", str(log), "--batch_size", "2"])
    hyps = {u: f"hyp of {u} ü" for u in utts}
    for j in (1, 2, 3):
        keys = (log / f"keys.{j}.scp").read_text().split()
        write_kaldi_text(log / f"output.{j}" / "text", {u: hyps[u] for u in keys})
    write_kaldi_text(tmp_path / "one_job" / "text", hyps)
    merge = ["merge", "--logdir", str(log), "--nj", "3", "--out_dir", str(tmp_path / "out")]
    assert decode_shards.main(merge) == 0
    assert (tmp_path / "out" / "text").read_bytes() == (tmp_path / "one_job" / "text").read_bytes()

    moved = (log / "keys.1.scp").read_text().split()[0]
    write_kaldi_text(log / "output.2" / "text", {**{u: hyps[u] for u in (log / "keys.2.scp").read_text().split()},
                                                 moved: "x"})
    assert decode_shards.main(merge) == 1
    assert f"output.2/text does not hold exactly the utterances of keys.2.scp: 0 missing (e.g. []), 1 not its own " \
           f"(e.g. ['{moved}'])" in capsys.readouterr().err
    (log / "output.2" / "text").unlink()
    assert decode_shards.main(merge) == 1
    assert "decoding job 2 did not finish (see" in capsys.readouterr().err
