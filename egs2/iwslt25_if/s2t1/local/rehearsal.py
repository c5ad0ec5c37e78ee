#!/usr/bin/env python3
"""The rehearsal of this recipe: stages 1-7 on real-layout corpora with REAL-SIZE models (random weights), on CPU.

    ./run.sh --rehearsal true [--corpora_root DIR] [options below]        (what `make rehearsal` runs)

What runs, in a recipe copy under exp/rehearsal/recipe/ (links to this recipe's run.sh, conf/, local/, …, so the real
config files are what runs; its data/, dump/, exp/ never mix with a real run's):
  corpora     fixture corpora in the real releases' layouts (make_fixture_corpora), unless --corpora_root
  stage 1-2   ./run.sh --pseudolabel true stages 1 and 2: data prep with pseudo-labelling (MT stand-in + COMETKiwi
              stand-in, the recipe's threshold), training mixes, features
  stand-ins   an M2M100 MT model and COMETKiwi for pseudo-labelling, COMET and a BERT for scoring, small and random,
              in their libraries' layouts (bin/make_standins)
  init        w2v-BERT 2.0 and Qwen2.5 rebuilt from the bundled config.json files with random weights, written with
              save_pretrained, plus a Qwen2-style tokenizer trained on the corpus (bin/make_real_init)
  per model   ./run.sh --model M [--lora true] stages 3 (stage-1 alignment), 4 (stage-2 SFT), 5 (decode every
              test set + the task-confusion diagnostic), 6 (score), 7 (pack); then the packed zip is reloaded with
              SpeechLMInference.from_pretrained and its outputs compared with stage 5's (local/rehearsal_reload.py)
  memory plan parameters, gradients, optimizer states and activations of every real config on one GPU
              (bin/memory_plan)
Every model setting comes from the real config (SpecAugment, dropout, layerdrop, gradient checkpointing, sdpa, LoRA);
name_or_path points at the init folders through command-line overrides, and only the batch and run length are
overridden (batch_bins, accum_grad, num_iters_per_epoch, max_epoch, T_0, keep_nbest_models, num_workers,
log_interval) — the report lists them. With random weights the LM never emits <|endoftext|>, so decoding is capped
at --max_new_tokens. use_amp (bf16 autocast) is inactive on CPU: ESPnet's autocast is torch.cuda's.

Writes exp/rehearsal/report.json and report.md (bin/rehearsal_report): per step wall time, peak RSS (largest
process), seconds per update, checkpoint sizes; the memory plan. A step that fails is recorded with its log and the
steps that need it are skipped; the exit status is non-zero then.

Options (--name value):
  --corpora_root DIR      real-layout corpora to use instead of the fixtures
  --size real|tiny        tiny: the same configs with shrunken architectures, for developing the harness (real)
  --pseudolabel true|false   stage 1 pseudo-labels Common Voice English with the stand-ins (true)
  --models "…"            qwen2.5-0.5b (full stage 2) and/or qwen2.5-1.5b_lora (LoRA stage 2) (both)
  --updates N             optimizer updates per training stage (2)
  --batch_bins N          training batch (numel of 160-dim fbank: 8000 per second of audio) (32000)
  --max_new_tokens N      decoding cap (8);  --diagnose_n N  utterances per test set for the task-confusion
                          diagnostic of the first model (1)
  --train_args "…"        more overrides for both training stages (recorded in the report), e.g.
                          "--encoder_conf config_overrides.mask_time_length=2"
  --memory_plan activations|counts|none   measure activations on CPU, or count parameters only (activations;
                          counts with --size tiny)
  --heavy_lock FILE       on a machine shared through an flock file: the light steps before the first real-size
                          step run under `flock -s FILE`; then the rehearsal holds FILE exclusively to its end
  --fresh true|false      start from an empty exp/rehearsal (true); false reuses the corpora, data, init, scorers
  --keep_checkpoints true|false   keep checkpoint.pth (optimizer states) and stage-1 models after use (false)
  --cleanup true|false    delete the big files (models, zips, init) after the report (false: listed with sizes)
"""
import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1]
LINKED = ("run.sh", "conf", "local", "db.sh", "speechlm.sh", "path.sh", "cmd.sh", "utils")
ENCODER = "facebook/w2v-bert-2.0"
MODELS = {  # rehearsal name -> run.sh options, hub name of its LM, exp dirs (run.sh's tags)
    "qwen2.5-0.5b": dict(run=["--model", "qwen2.5-0.5b"], lm="Qwen/Qwen2.5-0.5B",
                         exp1="exp/qwen2.5-0.5b_stage1", exp2="exp/qwen2.5-0.5b_stage2"),
    "qwen2.5-1.5b_lora": dict(run=["--model", "qwen2.5-1.5b", "--lora", "true"], lm="Qwen/Qwen2.5-1.5B",
                              exp1="exp/qwen2.5-1.5b_stage1", exp2="exp/qwen2.5-1.5b_lora_stage2"),
}
INFERENCE_MODEL = "valid.acc.best.pth"  # speechlm.sh's default
STAGE_NAMES = {3: "stage-1 alignment", 4: "stage-2 SFT", 5: "decode", 6: "score", 7: "pack"}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tf = dict(choices=["true", "false"])
    p.add_argument("--corpora_root", default="")
    p.add_argument("--size", choices=["real", "tiny"], default="real")
    p.add_argument("--models", default=" ".join(MODELS))
    p.add_argument("--pseudolabel", default="true", **tf)
    p.add_argument("--updates", type=int, default=2)
    p.add_argument("--batch_bins", type=int, default=32000)
    p.add_argument("--max_new_tokens", type=int, default=8)
    p.add_argument("--diagnose_n", type=int, default=1)
    p.add_argument("--train_args", default="")
    p.add_argument("--memory_plan", choices=["activations", "counts", "none"], default=None)
    p.add_argument("--heavy_lock", default="")
    p.add_argument("--fresh", default="true", **tf)
    p.add_argument("--keep_checkpoints", default="false", **tf)
    p.add_argument("--cleanup", default="false", **tf)
    p.add_argument("--work_dir", default="exp/rehearsal", help="relative to the recipe dir")
    a = p.parse_args(argv)
    a.models = a.models.split()
    if a.memory_plan is None:
        a.memory_plan = "counts" if a.size == "tiny" else "activations"
    unknown = [m for m in a.models if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    return a


class Rehearsal:
    def __init__(self, a):
        self.a = a
        self.work = (RECIPE / a.work_dir).resolve()
        self.recipe = self.work / "recipe"
        self.logs = self.work / "logs"
        self.steps = []
        self.failed = set()
        self.python = sys.executable
        self.real = a.size == "real"  # real-size steps run under the exclusive lock (tiny ones need none)
        self.holding, self.lock_wait = False, 0.0
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
                        ESPNET_SPEECHLM_CACHE=str(self.work / "cache"), HF_HUB_OFFLINE="1",
                        TRANSFORMERS_OFFLINE="1")

    def hold_lock(self):
        """Take --heavy_lock exclusively, once, before the first real-size step, and keep it to the end: between
        steps of their own, others' shared jobs would slip in and hold it for as long as they run. It is held by an
        `flock -x` process (visible to others waiting politely for exclusive jobs) that lives while a marker file
        exists and this process runs."""
        t0 = time.time()
        marker = self.logs / "lock.held"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        print(f"[rehearsal] waiting for {self.a.heavy_lock} (exclusive) …", flush=True)
        self.lock_proc = subprocess.Popen(
            ["flock", "-x", self.a.heavy_lock, "bash", "-c",
             'touch "$0"; while [ -e "$0" ] && kill -0 "$1" 2>/dev/null; do sleep 1; done', str(marker),
             str(os.getpid())])
        while not marker.exists():
            if self.lock_proc.poll() is not None:
                raise RuntimeError(f"flock -x {self.a.heavy_lock} exited with {self.lock_proc.returncode}")
            time.sleep(1)
        self.holding, self.lock_marker = True, marker
        self.lock_wait = time.time() - t0
        print(f"[rehearsal] holding {self.a.heavy_lock} after {self.lock_wait:.0f} s", flush=True)

    def release_lock(self):
        if self.holding:
            self.lock_marker.unlink(missing_ok=True)  # the holder's loop ends, flock exits, the lock is free
            self.lock_proc.wait()
            self.holding = False

    # ---------------------------------------------------------------- running one measured step
    def run(self, name: str, cmd, heavy: bool, needs=(), info=None, cwd=None) -> dict:
        """Run ``cmd`` (a list) as one step: wall time and the peak RSS of its largest process (wait4's rusage),
        output in logs/<name>.log. Skipped if a step it needs failed."""
        step = dict(name=name, command=" ".join(shlex.quote(str(c)) for c in cmd), heavy=heavy, **(info or {}))
        missing = [n for n in needs if n in self.failed]
        if missing:
            step.update(status="skipped", reason=f"needs {', '.join(missing)}, which failed")
            self.failed.add(name)
            self.steps.append(step)
            print(f"[rehearsal] {name}: skipped ({step['reason']})", flush=True)
            return step
        log = self.logs / (re.sub(r"[^\w.-]+", "_", name).strip("_") + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        full = [str(c) for c in cmd]
        started = log.with_suffix(".started")
        started.unlink(missing_ok=True)
        if heavy and self.a.heavy_lock and not self.holding:
            self.hold_lock()
        if self.a.heavy_lock and not self.holding:  # a light step before the real-size part: a shared lock;
            # the time spent waiting for it is not the step's: note when it starts
            full = ["flock", "-s", self.a.heavy_lock, "bash", "-c", 'date +%s.%N > "$0" && exec "$@"',
                    str(started)] + full
        print(f"[rehearsal] {name}: {step['command']}  (log: {log})", flush=True)
        t0 = time.time()
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.Popen(full, cwd=cwd or self.recipe, env=self.env, stdout=f, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        t1 = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        start = float(started.read_text().strip()) if started.exists() else t0
        started.unlink(missing_ok=True)
        step.update(wall_s=round(t1 - start, 1), peak_rss_gb=round(usage.ru_maxrss / 2**20, 2),
                    log=str(log.relative_to(self.work)), status="ok" if proc.returncode == 0 else "failed")
        if self.a.heavy_lock:
            step["lock_wait_s"] = round(start - t0 + self.lock_wait, 1)
            self.lock_wait = 0.0
        if proc.returncode != 0:
            step["exit_code"] = proc.returncode
            step["log_tail"] = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            self.failed.add(name)
        print(f"[rehearsal] {name}: {step['status']} in {step['wall_s']} s, peak RSS {step['peak_rss_gb']} GB"
              + (f" (after {step['lock_wait_s']} s waiting for {self.a.heavy_lock})" if self.a.heavy_lock else ""),
              flush=True)
        self.steps.append(step)
        self.save()
        return step

    def save(self):
        (self.work / "steps.json").write_text(json.dumps(self.steps, indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")

    # ---------------------------------------------------------------- the plan
    def prepare(self):
        if self.a.fresh == "true" and self.work.exists():
            shutil.rmtree(self.work)
        self.recipe.mkdir(parents=True, exist_ok=True)
        for name in LINKED:
            link = self.recipe / name
            if not link.is_symlink():
                link.symlink_to(os.path.realpath(RECIPE / name))

    def corpora(self) -> str:
        if self.a.corpora_root:
            return str(Path(self.a.corpora_root).resolve())
        root = self.work / "corpora"
        self.run("corpora", [self.python, "-m", "espnet_speechlm_plugin.bin.make_fixture_corpora", root], heavy=False)
        return str(root)

    def run_sh(self, *args):
        return ["./run.sh", "--nj", "1", "--ngpu", "0", "--corpora_root", self.corpora_root,
                "--pseudolabel", self.a.pseudolabel, *args]

    def training_args(self, model: str) -> str:
        """Overrides of one training stage: the init folders, the batch and the run length; nothing else."""
        init = "exp/init"
        lm = MODELS[model]["lm"]
        from espnet_speechlm_plugin.bin.make_real_init import folder_name

        u = self.a.updates
        return " ".join([
            f"--encoder_conf name_or_path={init}/{folder_name(ENCODER)}",
            f"--decoder_conf name_or_path={init}/{folder_name(lm)}",
            f"--batch_bins {self.a.batch_bins} --accum_grad 1 --num_iters_per_epoch {u} --max_epoch 1",
            f"--scheduler_conf T_0={u} --keep_nbest_models 1 --num_workers 0 --log_interval 1",
        ] + ([self.a.train_args] if self.a.train_args else []))

    def rehearse(self):
        a = self.a
        self.prepare()
        self.corpora_root = self.corpora()
        standins = self.work / "standins"
        stage1 = ["--stage", "1", "--stop_stage", "1"]
        needs1 = ["corpora"]
        if a.pseudolabel == "true":
            self.run("stand-ins: MT model, COMETKiwi", [self.python, "-m", "espnet_speechlm_plugin.bin.make_standins",
                                                       "--out_dir", standins, "--what", "mt", "cometkiwi"],
                     heavy=False)
            needs1.append("stand-ins: MT model, COMETKiwi")
            # local/data.sh's options (run.sh's own --data_args, plus the pseudo-labelling models)
            stage1 += ["--data_args", " ".join(shlex.quote(str(x)) for x in (
                "--nj", 1, "--corpora_root", self.corpora_root, "--pseudolabel", "true", "--pl_mt_models",
                standins / "mt_models.yaml", "--pl_qe_model", standins / "cometkiwi" / "checkpoints" / "model.ckpt",
                "--pl_args", "--no_progress"))]
        self.run("stage 1: data prep", self.run_sh(*stage1), heavy=False, needs=needs1)
        self.run("stage 2: mixes and features", self.run_sh("--stage", "2", "--stop_stage", "2"), heavy=False,
                 needs=["stage 1: data prep"])
        data = ["stage 2: mixes and features"]
        hubs = [ENCODER] + [MODELS[m]["lm"] for m in a.models]
        self.run("init: random real-size models + tokenizer",
                 [self.python, "-m", "espnet_speechlm_plugin.bin.make_real_init", "--text", "dump/train/text",
                  "dump/train/prompt", "--out_dir", "exp/init", "--size", a.size, "--models", *hubs],
                 heavy=self.real, needs=data)
        self.run("stand-ins: COMET, BERTScore", [
            self.python, "-m", "espnet_speechlm_plugin.bin.make_standins", "--out_dir", standins, "--what", "comet",
            "bert", "--text", *sorted(str(p.relative_to(self.recipe)) for p in self.recipe.glob("dump/*/text"))],
            heavy=False, needs=data)
        for model in a.models:
            self.rehearse_model(model)
        if a.memory_plan != "none":
            self.run("memory plan", [self.python, "-m", "espnet_speechlm_plugin.bin.memory_plan", "--out",
                                     str(self.work / "memory_plan.json"), "--recipe_dir", str(RECIPE)]
                     + (["--no_activations"] if a.memory_plan == "counts" else []),
                     heavy=a.memory_plan == "activations", cwd=RECIPE)

    def rehearse_model(self, model: str):
        a, m = self.a, MODELS[model]
        init = ["init: random real-size models + tokenizer"]
        train = self.training_args(model)
        exp1, exp2 = self.recipe / m["exp1"], self.recipe / m["exp2"]
        s3 = self.run(f"{model}: stage 3 ({STAGE_NAMES[3]})",
                      self.run_sh(*m["run"], "--stage", "3", "--stop_stage", "3", "--stage1_args", train),
                      heavy=self.real, needs=init, info=dict(model=model, stage=3, exp_dir=m["exp1"]))
        self.measure_training(s3, exp1)
        self.drop_optimizer_states(s3, exp1)
        s4 = self.run(f"{model}: stage 4 ({STAGE_NAMES[4]})",
                      self.run_sh(*m["run"], "--stage", "4", "--stop_stage", "4", "--stage2_args", train),
                      heavy=self.real, needs=[s3["name"]], info=dict(model=model, stage=4, exp_dir=m["exp2"]))
        self.measure_training(s4, exp2)
        self.drop_optimizer_states(s4, exp2)
        if s4["status"] == "ok" and a.keep_checkpoints == "false":
            self.drop(s4, exp1, [p for p in exp1.glob("*epoch.pth")])  # stage 2 started from it: no longer needed
        decode = f"--batch_size 8 --max_new_tokens {a.max_new_tokens}"
        # the diagnostic decodes each test set once per task and language: with the first model only (time)
        diagnose_n = a.diagnose_n if model == a.models[0] else 0
        s5 = self.run(f"{model}: stage 5 ({STAGE_NAMES[5]})",
                      self.run_sh(*m["run"], "--stage", "5", "--stop_stage", "5", "--decode_args", decode,
                                  "--diagnose_n", str(diagnose_n)),
                      heavy=self.real, needs=[s4["name"]], info=dict(model=model, stage=5, exp_dir=m["exp2"],
                                                                 decode_args=decode, diagnose_n=diagnose_n))
        self.measure_decoding(s5, exp2)
        score_args_file = self.work / "standins" / "score_args.txt"
        score_args = score_args_file.read_text(encoding="utf-8").strip() if score_args_file.exists() else ""
        s6 = self.run(f"{model}: stage 6 ({STAGE_NAMES[6]})",
                      self.run_sh(*m["run"], "--stage", "6", "--stop_stage", "6", "--score_args", score_args),
                      heavy=False, needs=[s5["name"], "stand-ins: COMET, BERTScore"],
                      info=dict(model=model, stage=6, exp_dir=m["exp2"]))
        self.check_scores(s6, exp2)
        s7 = self.run(f"{model}: stage 7 ({STAGE_NAMES[7]})",
                      self.run_sh(*m["run"], "--stage", "7", "--stop_stage", "7"),
                      heavy=self.real, needs=[s4["name"]], info=dict(model=model, stage=7, exp_dir=m["exp2"]))
        zip_path = exp2 / "packed" / "model.zip"
        if s7["status"] == "ok":
            s7["checkpoint_bytes"] = {"packed/model.zip": zip_path.stat().st_size}
        reload_json = self.work / f"reload_{model}.json"
        s = self.run(f"{model}: reload the packed zip and compare with stage 5",
                     [self.python, str(RECIPE / "local" / "rehearsal_reload.py"), "--zip", zip_path, "--decode_dir",
                      exp2 / f"decode_{INFERENCE_MODEL[:-4]}", "--data_root", self.recipe / "data",
                      "--max_new_tokens", str(a.max_new_tokens), "--out", reload_json],
                     heavy=self.real, needs=[s5["name"], s7["name"]], info=dict(model=model, stage="7b"))
        if reload_json.exists():
            s["reload"] = json.loads(reload_json.read_text(encoding="utf-8"))
        cache = self.work / "cache"
        if cache.exists() and a.keep_checkpoints == "false":
            self.drop(s, cache, [cache])  # the unpacked zip: a copy of the model

    # ---------------------------------------------------------------- measurements read from the outputs
    @staticmethod
    def measure_training(step: dict, exp: Path):
        log = exp / "train.log"
        if not log.exists():
            return
        text = log.read_text(encoding="utf-8", errors="replace")
        # ESPnet's epoch summary: "1epoch results: [train] iter_time=…, forward_time=…, …, train_time=…"
        found = re.findall(r"\[train\] (.*?)(?:, \[valid\]|$)", text, flags=re.M)
        if found:
            stats = dict(kv.split("=", 1) for kv in found[-1].split(", ") if "=" in kv)
            for k in ("train_time", "forward_time", "backward_time", "optim_step_time", "iter_time", "loss"):
                if k in stats:
                    try:
                        step[k if k == "loss" else f"{k}_s"] = float(stats[k])
                    except ValueError:
                        pass
        sizes = {}
        for p in sorted(exp.iterdir()):
            if p.is_file() and not p.is_symlink() and p.suffix == ".pth":
                sizes[p.name] = p.stat().st_size
        step["checkpoint_bytes"] = sizes
        groups = re.findall(r"param group (\S+): (\d+) params, lr (\S+)", text)
        if groups:
            step["param_groups"] = {g: dict(params=int(n), lr=float(lr) if lr != "None" else None)
                                    for g, n, lr in groups}

    def drop(self, step: dict, exp: Path, paths):
        """Delete files that later steps do not need (sizes recorded in the step first)."""
        dropped = step.setdefault("deleted_bytes", {})
        for p in paths:
            if p.is_dir():
                dropped[str(p.relative_to(self.work))] = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
                shutil.rmtree(p)
            elif p.exists():
                dropped[str(p.relative_to(self.work))] = p.stat().st_size
                p.unlink()
        self.save()

    def drop_optimizer_states(self, step: dict, exp: Path):
        """checkpoint.pth (model + optimizer states) only serves --resume: gone once the stage succeeded."""
        if step.get("status") == "ok" and self.a.keep_checkpoints == "false":
            self.drop(step, exp, [exp / "checkpoint.pth"])

    @staticmethod
    def measure_decoding(step: dict, exp: Path):
        decode = exp / f"decode_{INFERENCE_MODEL[:-4]}"
        sets, utts, seconds = {}, 0, 0.0
        for text in sorted(decode.glob("*/text")):
            lines = text.read_text(encoding="utf-8").splitlines()
            diag = text.parent / "diagnose" / "task_confusion.json"
            sets[text.parent.name] = dict(utterances=len(lines), diagnose=diag.exists())
            log = text.parent / "decode.log"  # bin/decode: "decoded N utterances in X s" (model loading excluded)
            found = re.findall(r"decoded (\d+) utterances in ([\d.]+) s", log.read_text(encoding="utf-8")
                               if log.exists() else "")
            if found:
                utts, seconds = utts + int(found[-1][0]), seconds + float(found[-1][1])
        step["test_sets"] = sets
        if utts:
            step["decode_s_per_utterance"] = round(seconds / utts, 3)

    def check_scores(self, step: dict, exp: Path):
        results = exp / "results.json"
        if step["status"] != "ok" or not results.exists():
            return
        rows = json.loads(results.read_text(encoding="utf-8"))
        missing = [r for r in rows if r.get("value") is None]
        step["metric_rows"] = len(rows)
        step["metrics"] = sorted({r["metric"] for r in rows})
        if missing:
            step["status"] = "failed"
            step["not_computed"] = [f"{r['test_set']} {r['task']} {r['lang']} {r['metric']}: {r.get('note')}"
                                    for r in missing]
            self.failed.add(step["name"])
        self.save()


def main(argv=None):
    a = parse_args(argv)
    r = Rehearsal(a)
    t0 = time.time()
    try:
        r.rehearse()
    finally:
        r.release_lock()
        from espnet_speechlm_plugin.bin.rehearsal_report import write_report

        report = write_report(r.work, r.steps, vars(a) | {"wall_s": round(time.time() - t0, 1)},
                              cleanup=a.cleanup == "true")
        print(f"[rehearsal] report: {report}")
    failed = [s["name"] for s in r.steps if s["status"] != "ok"]
    if failed:
        print(f"[rehearsal] FAILED or skipped: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
