#!/usr/bin/env python3
"""One Markdown table comparing demo runs: held-out English WER, BLEU per target language, answer exact match.

Reads each experiment's ``results.json`` (written by stage 6, the same numbers as its RESULTS.md) and, with
``--spread``, adds the mean and the range (max - min) over the runs, for runs that differ only in their seed.

    local/results_table.py exp/tiny_stage2 exp/tiny_conv0_adapter1x2_stage2 [--label 8x 2x] [--spread]
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Dict, List

COLUMNS = [("WER en", "transcribe", "en", "wer", 3), ("BLEU de", "translate", "de", "bleu", 1),
           ("BLEU it", "translate", "it", "bleu", 1), ("BLEU zh", "translate", "zh", "bleu", 1),
           ("EM en", "answer", "en", "exact_match", 2), ("EM de", "answer", "de", "exact_match", 2),
           ("EM it", "answer", "it", "exact_match", 2), ("EM zh", "answer", "zh", "exact_match", 2)]
ALL_EM, ALL_EM_DIGITS = "EM all", 2


def scores(exp_dir: Path, test_set: str = "test") -> Dict[str, float]:
    rows = json.loads((exp_dir / "results.json").read_text(encoding="utf-8"))
    by_key = {(r["task"], r["lang"], r["metric"]): r for r in rows if r["test_set"] == test_set}
    out = {}
    for name, task, lang, metric, _ in COLUMNS:
        row = by_key.get((task, lang, metric))
        if row is None or row["value"] is None:
            raise SystemExit(f"{exp_dir}/results.json: no {metric} for {task} {lang} on {test_set}")
        out[name] = row["value"]
    answers = [r for (task, _, metric), r in by_key.items() if task == "answer" and metric == "exact_match"]
    out[ALL_EM] = sum(r["value"] * r["n"] for r in answers) / sum(r["n"] for r in answers)  # over all questions
    return out


def table(runs: List[Dict[str, float]], labels: List[str], spread: bool) -> str:
    names = [c[0] for c in COLUMNS] + [ALL_EM]
    digits = {c[0]: c[4] for c in COLUMNS} | {ALL_EM: ALL_EM_DIGITS}
    lines = ["| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, run in zip(labels, runs):
        lines.append(f"| {label} | " + " | ".join(f"{run[n]:.{digits[n]}f}" for n in names) + " |")
    if spread:
        mean = [statistics.mean(r[n] for r in runs) for n in names]
        rng = [max(r[n] for r in runs) - min(r[n] for r in runs) for n in names]
        lines.append("| mean | " + " | ".join(f"{m:.{digits[n]}f}" for m, n in zip(mean, names)) + " |")
        lines.append("| range (max − min) | " + " | ".join(f"{r:.{digits[n]}f}" for r, n in zip(rng, names)) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dirs", nargs="+", type=Path, help="stage-2 experiment dirs (with results.json)")
    p.add_argument("--label", nargs="+", default=None, help="one row label per dir (default: the dir name)")
    p.add_argument("--test_set", default="test")
    p.add_argument("--spread", action="store_true", help="add the mean and the range over the runs")
    a = p.parse_args(argv)
    labels = a.label or [d.name for d in a.exp_dirs]
    if len(labels) != len(a.exp_dirs):
        p.error(f"{len(labels)} labels for {len(a.exp_dirs)} dirs")
    print(table([scores(d, a.test_set) for d in a.exp_dirs], labels, a.spread))


if __name__ == "__main__":
    main()
