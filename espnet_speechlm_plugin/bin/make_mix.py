"""Recipe stage 2 (first step): combine the data dirs of the training mixes into one train dir and one valid dir
per mix, with no evaluation clip left in training.

    python -m espnet_speechlm_plugin.bin.make_mix --mix conf/train_mix_stage1.yaml conf/train_mix_stage2.yaml \
        --train_dir data/train --valid_prefix data/dev --exclude_dirs data/librispeech_en_test-clean ...

Reads each mix YAML (format: ``espnet_speechlm_plugin/data/mix.py``), checks that every listed data dir holds
only the task its entry names, removes from every training source each utterance that is an evaluation clip
(one of the mixes' ``valid:`` dirs or an ``--exclude_dirs`` dir, e.g. the recipe's test sets: same audio file,
same clip name and duration, or same sentence and speaker; ``data/filter.py``), applies the mix's duration caps
to the dir's ``utt2dur`` (read from the audio headers where a dir has none), and writes:

  <train_dir>/  wav.scp text prompt utt2spk spk2utt utt2dur [transcript] utt2group — every utterance kept by
                at least one mix, ids prefixed by the source name (``<source>-<utt>``, speakers likewise)
                <mix>.json, <mix>.utt2group   one pair per mix: its sources, weights and utterances
                                              (training reads it with ``--train_mix <train_dir>/<mix>.json``)
                <mix>.dropped                 ``utt reason`` of what that mix dropped (evaluation clips, caps)
                mix_report.txt                per mix and source: utterances, kept, hours, dropped per reason;
                                              evaluation clips removed per source, kind of match and set
  <valid_prefix>_<mix>/  one per mix with a ``valid:`` list: those dirs combined the same way (that mix's caps
                apply; no weights). Each training stage validates on its own tasks: a stage-1 (ASR) mix's valid
                set holds no translation or QA item.

One train dir serves every training stage, so stage 2 featurizes each audio once: utterances whose wav.scp values
are identical (the same clip used for ASR and ST, one passage with several questions) share one feature matrix.
Every dir is built in a temp dir and renamed: a dir that exists is complete.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from espnet_speechlm_plugin.data.filter import (
    IN_EVAL, Clip, EvalClips, Overlap, apply_caps, format_overlap_report, format_report, overlap_report,
    source_report,
)
from espnet_speechlm_plugin.data.kaldi import KaldiFileError, read_kaldi_lines, read_kaldi_text, replace_dir
from espnet_speechlm_plugin.data.mix import MixConfig, MixEntry, MixError, load_mix_config
from espnet_speechlm_plugin.vocab import PromptError, parse_prompt

REQUIRED = ("wav.scp", "text", "prompt", "utt2spk")
OPTIONAL = ("transcript",)
FILES = REQUIRED + OPTIONAL + ("utt2dur",)


def _task_of(prompt: str, where: str) -> str:
    """The task of a prompt line; a malformed line is a MixError naming ``where``."""
    try:
        return parse_prompt(prompt, None, where).task
    except PromptError as err:
        raise MixError(str(err)) from None


class Source:
    """One source data dir, read and checked once however many mixes use it."""

    def __init__(self, entry: MixEntry, where: str):
        self.name, self.dir, self.task = entry.name, Path(entry.dir), entry.task
        if not self.dir.is_dir():
            raise MixError(f"{where}: data dir {self.dir} does not exist (run stage 1, or fix 'dir')")
        self.files: Dict[str, Dict[str, str]] = {}
        for name in REQUIRED:
            if not (self.dir / name).is_file():
                raise MixError(f"{where}: {self.dir}/{name} is missing: not a complete data dir")
            self.files[name] = read_kaldi_text(self.dir / name)
        for name in OPTIONAL:
            if (self.dir / name).is_file():
                self.files[name] = read_kaldi_text(self.dir / name)
        self.utts = sorted(self.files["wav.scp"])
        for name in ("text", "prompt", "utt2spk"):
            extra = set(self.files[name]) ^ set(self.utts)
            if extra:
                u = sorted(extra)[0]
                side = "has no line in wav.scp" if u in self.files[name] else f"has no line in {name}"
                raise MixError(f"{self.dir}/{name}: utterance '{u}' {side} ({len(extra)} mismatched in all)")
        for lineno, utt, value in read_kaldi_lines(self.dir / "prompt"):
            place = f"{self.dir}/prompt line {lineno} (utterance '{utt}')"
            task = _task_of(value, place)
            if task != self.task:
                raise MixError(f"{place}: task '{task}', but {where} says task '{self.task}'; one data dir holds "
                               "one task: fix the entry or the dir")
        self.utt2dur = self._durations()

    def _durations(self) -> Dict[str, float]:
        path = self.dir / "utt2dur"
        if path.is_file():
            out = {}
            for lineno, utt, value in read_kaldi_lines(path):
                try:
                    out[utt] = float(value)
                except ValueError:
                    raise MixError(f"{path} line {lineno}: utterance '{utt}': duration {value!r} is not a number")
            return out
        from espnet_speechlm_plugin.features.audio import AudioError, probe_audio, read_wav_scp

        print(f"make_mix: {path} is missing: reading durations from the audio", file=sys.stderr)
        try:
            return {e.utt_id: probe_audio(e).duration
                    for e in tqdm(read_wav_scp(str(self.dir / "wav.scp")), desc=f"durations {self.dir}")}
        except AudioError as e:
            raise MixError(str(e)) from None

    def clips(self) -> List[Clip]:
        """Every utterance as the evaluation-overlap check sees it (what the audio says: ``transcript``, else the
        target of a transcription dir)."""
        said = self.files.get("transcript") or (self.files["text"] if self.task == "transcribe" else {})
        return [Clip(u, self.files["wav.scp"][u], self.utt2dur.get(u), self.files["utt2spk"][u], said.get(u))
                for u in self.utts]

    def lines(self, name: str, utts) -> List[str]:
        """``<source>-<utt> value`` lines of one file (speakers prefixed too, in utt2spk)."""
        values = self.utt2dur if name == "utt2dur" else self.files[name]
        out = []
        for u in utts:
            value = values[u]
            if name == "utt2dur":
                value = f"{value:.3f}"
            elif name == "utt2spk":
                value = f"{self.name}-{value}"
            out.append(f"{self.name}-{u} {value}")
        return out


def eval_dir_clips(path: Path) -> List[Clip]:
    """The utterances of an evaluation data dir given by --exclude_dirs: ``wav.scp`` is required; ``utt2dur``,
    ``utt2spk`` and ``transcript`` (or the ``text`` of a transcription dir) add the clip-name and sentence checks."""
    if not (path / "wav.scp").is_file():
        raise MixError(f"--exclude_dirs: {path}/wav.scp not found: not a data dir (run stage 1, or fix the path)")
    files = {name: read_kaldi_text(path / name) for name in ("wav.scp", "utt2spk", "utt2dur", "transcript", "text",
                                                                "prompt") if (path / name).is_file()}
    said = files.get("transcript")
    prompts = files.get("prompt", {})
    if said is None and prompts and all(_task_of(v, f"{path}/prompt: utterance '{u}'") == "transcribe"
                                        for u, v in prompts.items()):
        said = files.get("text")
    durations = {}
    for utt, value in files.get("utt2dur", {}).items():
        try:
            durations[utt] = float(value)
        except ValueError:
            raise MixError(f"{path}/utt2dur: utterance '{utt}': duration {value!r} is not a number") from None
    return [Clip(u, audio, durations.get(u), files.get("utt2spk", {}).get(u), (said or {}).get(u))
            for u, audio in files["wav.scp"].items()]


def collect_sources(configs: List[MixConfig]) -> Dict[str, Source]:
    sources: Dict[str, Source] = {}
    seen: Dict[str, tuple] = {}
    for config in configs:
        for part in ("train", "valid"):
            for i, entry in enumerate(getattr(config, part), 1):
                where = f"{config.path}: {part} entry {i}"
                key = (os.path.normpath(entry.dir), entry.task)
                if entry.name in seen and seen[entry.name][0] != key:
                    raise MixError(f"{where}: source name '{entry.name}' is {key} here but {seen[entry.name][0]} in "
                                   f"{seen[entry.name][1]}; give one of them another 'name:'")
                if entry.name not in sources:
                    seen[entry.name] = (key, where)
                    sources[entry.name] = Source(entry, where)
    return sources


def _write_dir(out_dir: Path, rows: Dict[str, List[str]], extra: Dict[str, str]) -> None:
    """Write a data dir in a temp dir next to it, then swap it in (a dir that exists is complete)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        for name, lines in list(rows.items()) + [(k, None) for k in extra]:
            text = extra[name] if lines is None else "".join(line + "\n" for line in sorted(lines))
            (tmp / name).write_text(text, encoding="utf-8")
        replace_dir(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _combine(sources: Dict[str, Source], kept: Dict[str, set]) -> Dict[str, List[str]]:
    """The files of one combined data dir from the kept utterances of each source."""
    rows: Dict[str, List[str]] = {name: [] for name in REQUIRED + ("utt2dur", "utt2group", "spk2utt")}
    with_transcript = all("transcript" in sources[s].files for s in kept if kept[s])
    if with_transcript:
        rows["transcript"] = []
    spk2utt: Dict[str, List[str]] = {}
    for name, utts in kept.items():
        if not utts:
            continue
        src, ordered = sources[name], sorted(utts)
        for f in list(REQUIRED) + ["utt2dur"] + (["transcript"] if with_transcript else []):
            rows[f] += src.lines(f, ordered)
        rows["utt2group"] += [f"{name}-{u} {name}" for u in ordered]
        for line in src.lines("utt2spk", ordered):
            utt, spk = line.split()
            spk2utt.setdefault(spk, []).append(utt)
    rows["spk2utt"] = [f"{spk} {' '.join(sorted(utts))}" for spk, utts in spk2utt.items()]
    return rows


def index_eval_clips(configs: List[MixConfig], sources: Dict[str, Source], exclude_dirs) -> EvalClips:
    """Every utterance of the mixes' valid dirs and of the --exclude_dirs dirs (each dir once)."""
    clips = EvalClips()
    seen = set()
    for config in configs:
        for entry in config.valid:
            key = os.path.realpath(entry.dir)
            if key not in seen:
                seen.add(key)
                clips.add(entry.dir, sources[entry.name].clips())
    for d in exclude_dirs:
        key = os.path.realpath(d)
        if key not in seen:
            seen.add(key)
            clips.add(str(d), eval_dir_clips(Path(d)))
    return clips


def make_mix(mix_paths: List[str], train_dir: str, valid_prefix: Optional[str] = None, exclude_dirs=(),
             progress: bool = True) -> str:
    """Build the combined dirs (see the module docstring); returns the report text (also in mix_report.txt)."""
    configs = [load_mix_config(p) for p in mix_paths]
    names = Counter(c.name for c in configs)
    if any(n > 1 for n in names.values()):
        raise MixError(f"two mix files have the same name {[k for k, n in names.items() if n > 1]}: rename one")
    if valid_prefix is None and any(c.valid for c in configs):
        raise MixError("the mixes list 'valid' dirs: give --valid_prefix (each mix's valid set is "
                       "<valid_prefix>_<mix name>)")
    sources = collect_sources(configs)

    # evaluation clips: found once per training source, whichever mixes use it
    eval_clips = index_eval_clips(configs, sources, exclude_dirs)
    train_names = sorted({e.name for c in configs for e in c.train})
    in_eval: Dict[str, Dict[str, Overlap]] = {}
    for name in tqdm(train_names, desc="evaluation clips", disable=not progress):
        found = {c.utt: eval_clips.find(c) for c in sources[name].clips()}
        in_eval[name] = {u: o for u, o in found.items() if o is not None}

    train_kept: Dict[str, set] = {name: set() for name in sources}
    reports, per_mix, valid_dirs = [], {}, {}
    for config in tqdm(configs, desc="mixes", disable=not progress):
        rows, dropped_lines, utt2group = [], [], []
        for entry in config.train:
            src, removed = sources[entry.name], in_eval[entry.name]
            kept, dropped = apply_caps([u for u in src.utts if u not in removed], src.utt2dur, config.caps)
            if not kept:
                why = (f"{len(removed)} are evaluation clips (see mix_report.txt), the caps drop {len(dropped)}; "
                       if removed else "")
                raise MixError(f"{config.path}: no utterance of {src.dir} is left for training ({why}check "
                               "max_duration/min_duration and its utt2dur, and that no valid or test set is also "
                               "a training source)")
            train_kept[entry.name].update(kept)
            rows.append(source_report(entry.name, src.utts, src.utt2dur, {**{u: IN_EVAL for u in removed},
                                                                          **dropped}))
            dropped_lines += [f"{entry.name}-{u} {o.describe()}" for u, o in removed.items()]
            dropped_lines += [f"{entry.name}-{u} {config.caps.describe(r)}" for u, r in dropped.items()]
            utt2group += [f"{entry.name}-{u} {entry.name}" for u in kept]
        valid_kept: Dict[str, set] = {}
        for entry in config.valid:
            src = sources[entry.name]
            kept, dropped = apply_caps(src.utts, src.utt2dur, config.caps)
            valid_kept[entry.name] = set(kept)
            rows.append(source_report(f"{entry.name} (valid)", src.utts, src.utt2dur, dropped))
            dropped_lines += [f"{entry.name}-{u} {config.caps.describe(r)}" for u, r in dropped.items()]
        if config.valid:
            if not any(valid_kept.values()):
                raise MixError(f"{config.path}: the caps drop every utterance of its valid dirs: this training "
                               "stage would have nothing to validate on")
            valid_dirs[f"{valid_prefix}_{config.name}"] = valid_kept
        reports.append(format_report(f"{config.name} ({config.path})", config.caps, rows))
        kept_total = len(utt2group)
        meta = {
            "name": config.name, "config": config.path, "utt2group": f"{config.name}.utt2group",
            "epoch_size": config.epoch_size or kept_total,
            "caps": {"max_duration": config.caps.max_duration, "min_duration": config.caps.min_duration},
            "valid_dir": f"{valid_prefix}_{config.name}" if config.valid else None,
            "sources": [dict(name=e.name, dir=e.dir, task=e.task, weight=e.weight,
                             utterances=r.kept, hours=round(r.seconds_kept / 3600, 3))
                        for e, r in zip(config.train, rows)],
        }
        per_mix[config.name] = (meta, utt2group, dropped_lines)

    overlap = [overlap_report(name, len(sources[name].utts), in_eval[name]) for name in train_names]
    report = "\n\n".join(reports + [format_overlap_report(eval_clips, overlap)]) + "\n"
    extra = {"mix_report.txt": report}
    for name, (meta, utt2group, dropped_lines) in per_mix.items():
        extra[f"{name}.json"] = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
        extra[f"{name}.utt2group"] = "".join(line + "\n" for line in sorted(utt2group))
        extra[f"{name}.dropped"] = "".join(line + "\n" for line in sorted(dropped_lines))
    _write_dir(Path(train_dir), _combine(sources, train_kept), extra)
    for valid_dir, kept in valid_dirs.items():
        _write_dir(Path(valid_dir), _combine(sources, kept), {"mix_report.txt": report})
    return report


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mix", nargs="+", required=True, help="mix YAML file(s), e.g. conf/train_mix_stage1.yaml")
    p.add_argument("--train_dir", required=True, help="the combined training data dir to write (e.g. data/train)")
    p.add_argument("--valid_prefix", default=None,
                   help="each mix's 'valid:' dirs are combined into <valid_prefix>_<mix name> (e.g. data/dev gives "
                        "data/dev_train_mix_stage1)")
    p.add_argument("--exclude_dirs", nargs="*", default=[],
                   help="more evaluation data dirs (e.g. the test sets) whose clips must not be trained on; the "
                        "mixes' 'valid:' dirs are always excluded")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    try:
        report = make_mix(args.mix, args.train_dir, args.valid_prefix, args.exclude_dirs)
    except (MixError, KaldiFileError) as e:
        print(f"make_mix: error: {e}", file=sys.stderr)
        return 1
    print(report, end="")
    valid = f" and {args.valid_prefix}_<mix> per mix with a 'valid:' list" if args.valid_prefix else ""
    print(f"make_mix: wrote {args.train_dir}{valid}; report in {args.train_dir}/mix_report.txt, dropped "
          f"utterances in {args.train_dir}/<mix>.dropped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
