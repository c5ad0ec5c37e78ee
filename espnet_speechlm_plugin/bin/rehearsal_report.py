"""The rehearsal's report: ``report.json`` and ``report.md`` from its measured steps and the memory plan.

Where it sits: the last step of ``egs2/iwslt25_if/s2t1/local/rehearsal.py`` (``./run.sh --rehearsal true``), which
records one entry per step (wall time, peak RSS of the largest process, seconds per update, checkpoint sizes, …) in
``<work>/steps.json``; ``bin/memory_plan`` writes ``<work>/memory_plan.json``. This module joins them:

    report.json  {"stages": [one entry per step], "memory_plan": [one entry per config], "run": {...},
                  "big_files": {path: bytes}, "ok": bool}
    report.md    the same as tables a person reads

    python -m espnet_speechlm_plugin.bin.rehearsal_report exp/rehearsal        (rewrite both from the JSON files)
"""
import argparse
import json
import shutil
from pathlib import Path
from typing import List, Optional

GB = 1e9
# what the rehearsal sets on the command line for every training stage; everything else comes from the config
OVERRIDES = {
    "encoder_conf.name_or_path / decoder_conf.name_or_path": "the init folders (random real-size weights)",
    "batch_bins": "small batches: this machine has 24 GB of RAM and no GPU",
    "accum_grad": "1 (one batch per update)",
    "num_iters_per_epoch, max_epoch, scheduler_conf.T_0": "a few updates, one epoch (T_0 = the updates, as the "
                                                          "configs' own rule says)",
    "keep_nbest_models": "1 (disk)",
    "num_workers": "0 (memory: no forked data-loader workers next to a 20 GB process)",
    "log_interval": "1",
}
NOT_ON_CPU = ("use_amp: true (bf16 autocast) is inactive: ESPnet's trainer uses torch.cuda.amp, which does nothing "
              "without CUDA; every step runs in float32")


def _gb(n: Optional[float]) -> str:
    return "" if n is None else f"{n / GB:.2f}"


def big_files(work: Path, min_bytes: int = 100 * 2**20) -> dict:
    """Files of ``work`` larger than ``min_bytes`` (model files, zips, init weights), largest first."""
    found = {}
    for p in work.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_size >= min_bytes:
            found[str(p.relative_to(work))] = p.stat().st_size
    return dict(sorted(found.items(), key=lambda kv: -kv[1]))


def _stage_rows(stages: List[dict]) -> List[str]:
    rows = ["| step | status | wall (s) | peak RSS (GB) | s / update | checkpoint files (GB) |",
            "|---|---|---:|---:|---:|---|"]  # wall: from the moment the step held the lock
    for s in stages:
        ckpt = ", ".join(f"{k} {_gb(v)}" for k, v in (s.get("checkpoint_bytes") or {}).items())
        step = f"{s['train_time_s']:.1f}" if "train_time_s" in s else (
            f"{s['decode_s_per_utterance']:.2f} / utt" if "decode_s_per_utterance" in s else "")
        rows.append(f"| {s['name']} | {s['status']} | {s.get('wall_s', '')} | {s.get('peak_rss_gb', '')} | {step} "
                    f"| {ckpt} |")
    return rows


def _plan_rows(plan: List[dict]) -> List[str]:
    rows = ["| config | trainable (M) | frozen (M) | weights | grads | optimizer | activations | peak | fits "
            f"{plan[0]['gpu_gb'] if plan else 80:g} GB | if not |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for p in plan:
        if "error" in p:
            rows.append(f"| {p['config']} | | | | | | | | n/a | {p['error']} |")
            continue
        g = p["gb"]
        measured = "activations" in p  # without them (counts only) nothing can be said about fitting
        fits = ("yes" if p["fits"] else "no") if measured else "n/a"
        acts = f"{g['activations']:.1f}" if measured else "not measured"
        rows.append(f"| {p['config']} | {p['trainable_params'] / 1e6:,.1f} | {p['frozen_params'] / 1e6:,.1f} "
                    f"| {g['weights']:.1f} | {g['gradients']:.1f} | {g['optimizer']:.1f} | {acts} "
                    f"| {g['peak']:.1f} | {fits} | {p.get('advice', '')} |")
    return rows


def render(report: dict) -> str:
    run = report["run"]
    title = ("Rehearsal of egs2/iwslt25_if/s2t1: real-size architectures, random weights, CPU"
             if run.get("size", "real") == "real" else
             "Harness check of the egs2/iwslt25_if/s2t1 rehearsal with TINY architectures (not the rehearsal)")
    lines = [f"# {title}", "",
             f"Result: **{'passed' if report['ok'] else 'FAILED'}** in {report['work_s'] / 60:.1f} min of work "
             f"({run.get('wall_s', 0) / 60:.1f} min elapsed, {report['lock_wait_s'] / 60:.1f} min of it waiting for "
             f"the machine's lock) (size {run.get('size')}, models {', '.join(run.get('models', []))}, "
             f"{run.get('updates')} updates per training stage, batch_bins {run.get('batch_bins')}, decoding capped "
             f"at {run.get('max_new_tokens')} new tokens: a random LM does not stop by itself).", "",
             "## Steps", "", "Wall time from the moment the step held the machine's lock; peak RSS is that of the "
             "largest process of the step; s / update is ESPnet's mean train_time per iteration of the epoch (for "
             "decoding: seconds per utterance, model loading excluded).", ""]
    lines += _stage_rows(report["stages"])
    failed = [s for s in report["stages"] if s["status"] != "ok"]
    for s in failed:
        lines += ["", f"**{s['name']}**: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else "")]
        for key in ("not_computed", "log_tail"):
            if s.get(key):
                lines += ["```"] + [str(x) for x in s[key]] + ["```"]
    reloads = [s for s in report["stages"] if s.get("reload")]
    if reloads:
        lines += ["", "## Packed model reloaded with SpeechLMInference.from_pretrained", "",
                  "| model | test set | utterances | equal to stage 5 |", "|---|---|---:|---:|"]
        for s in reloads:
            for name, r in s["reload"].items():
                lines.append(f"| {s.get('model')} | {name} | {r['utterances']} | {r['equal']} |")
    scored = [s for s in report["stages"] if s.get("metrics")]
    for s in scored:
        lines += ["", f"Stage 6 of {s.get('model')}: {s['metric_rows']} metric rows ({', '.join(s['metrics'])}), "
                  f"{len(s.get('not_computed') or [])} not computed."]
    lines += ["", "## What the rehearsal overrides", "", "Every model setting is the real config's. On the command "
              "line of each training stage:", ""]
    lines += [f"- `{k}`: {v}" for k, v in OVERRIDES.items()]
    if run.get("train_args"):
        lines += [f"- given with --train_args: `{run['train_args']}`"]
    lines += [f"- {NOT_ON_CPU}"]
    plan = report.get("memory_plan") or []
    if plan:
        lines += ["", f"## Memory plan: one {plan[0]['gpu_gb']:g} GB GPU, bf16 autocast, AdamW", "",
                  "GB (1e9 bytes). Parameters, gradients and optimizer states are counted on the meta device; "
                  "activations are measured on CPU (see bin/memory_plan.py) at the config's batch_bins, worst case "
                  "(every utterance of the batch at the mix's max_duration).", ""]
        lines += _plan_rows(plan)
        notes = sorted({n for p in plan for n in p.get("notes", [])})
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
    files = report.get("big_files") or {}
    if files:
        total = sum(files.values())
        action = "deleted (--cleanup true)" if report.get("cleaned_up") else \
            "kept; delete them with `rm -r` or rerun with `--cleanup true`"
        lines += ["", f"## Big files ({total / GB:.1f} GB, {action})", ""]
        lines += [f"- {k}: {v / GB:.2f} GB" for k, v in files.items()]
    return "\n".join(lines) + "\n"


def write_report(work: Path, stages: Optional[List[dict]] = None, run: Optional[dict] = None,
                 cleanup: bool = False) -> Path:
    """Write ``work/report.json`` and ``work/report.md``; with ``cleanup`` delete the big files afterwards (their
    sizes stay in the report)."""
    work = Path(work)
    prev = work / "report.json"
    previous = json.loads(prev.read_text(encoding="utf-8")) if prev.exists() else {}
    if stages is None:
        steps = work / "steps.json"
        stages = json.loads(steps.read_text(encoding="utf-8")) if steps.exists() else previous.get("stages", [])
    if run is None:
        run = previous.get("run")
    plan_path = work / "memory_plan.json"
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path.exists() else []
    report = dict(ok=bool(stages) and all(s["status"] == "ok" for s in stages),
                  work_s=round(sum(s.get("wall_s", 0) for s in stages), 1),
                  lock_wait_s=round(sum(s.get("lock_wait_s", 0) for s in stages), 1), stages=stages, memory_plan=plan,
                  run=run or {}, overrides=OVERRIDES, not_on_cpu=[NOT_ON_CPU], big_files=big_files(work),
                  cleaned_up=cleanup)
    for name, text in (("report.json", json.dumps(report, indent=1, ensure_ascii=False) + "\n"),
                       ("report.md", render(report))):
        tmp = work / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(work / name)
    if cleanup:
        for rel in report["big_files"]:
            path = work / rel
            path.unlink(missing_ok=True)
        init = work / "recipe" / "exp" / "init"
        if init.exists():
            shutil.rmtree(init)
    return work / "report.md"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work_dir", type=Path, help="the rehearsal's work dir (exp/rehearsal)")
    a = p.parse_args(argv)
    print(write_report(a.work_dir))


if __name__ == "__main__":
    main()
