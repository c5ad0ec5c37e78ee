"""Check a Kaldi data dir before a recipe trusts it: one sentence per problem, naming file, line, utterance and fix.

Where it sits: the end of recipe stage 1 (data prep) and the start of stage 2 (features) run
``python -m espnet_speechlm_plugin.bin.validate_data_dir data/<set>``; a dump dir (``feats.scp``, stage 2's
output) can be checked the same way before training. What is checked:

- files: ``wav.scp`` (or ``feats.scp`` in a dump dir) and ``prompt`` always, ``text`` for training sets;
  ``utt2spk`` and ``transcript`` when present; ``segments`` is not supported (featurize reads whole files);
- every line: valid UTF-8, Unix line endings (no CRLF), fields separated by spaces (no tabs), an id and a value;
- utterance ids sorted (``LC_ALL=C sort`` order, which is Python's string order) and unique in every file, and
  the same utterances in every file;
- ``prompt``: ``lang task [question]`` with a known task and language, a question for ``answer``;
- ``text``: a non-empty target for every utterance of a training set (elsewhere a warning);
- audio (header only for files; pipes and ark entries are decoded): exists, readable, not truncated, not empty,
  at least one feature frame long (35 ms). In a dump dir: every utterance has more than 0 frames.

What stage 2 fixes or filters is not an error; it is counted in the report: audio at another sample rate
(resampled), multi-channel audio (downmixed), audio outside ``--min_dur``/``--max_dur`` (dropped), and, for
decoded audio, silence only (dropped).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tqdm import tqdm

from espnet_speechlm_plugin.features.audio import (
    SILENCE_PEAK_DBFS,
    TARGET_SAMPLE_RATE,
    AudioError,
    WavScpEntry,
    probe_audio,
)
from espnet_speechlm_plugin.features.fbank import MIN_NUM_SAMPLES
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, prompt_problems

MAX_PER_KIND = 5  # messages of one kind shown before "… and N more like this"


@dataclass
class Line:
    lineno: int
    utt: str
    value: str


@dataclass
class Report:
    """What :func:`validate_data_dir` found. ``errors`` must be fixed; the rest is counted and handled in stage 2."""

    data_dir: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    num_utts: int = 0
    num_audio: int = 0
    seconds: float = 0.0
    resample: Counter = field(default_factory=Counter)  # source sample rate -> number of audio
    downmix: int = 0
    too_long: list[str] = field(default_factory=list)  # utterance ids
    too_short: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    min_dur: float = 0.0
    max_dur: float = 0.0
    _kinds: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, kind: str, message: str) -> None:
        """Record one problem; past MAX_PER_KIND of one kind only the count grows (see :meth:`finish`)."""
        self._kinds[kind] += 1
        if self._kinds[kind] <= MAX_PER_KIND:
            self.errors.append(message)

    def finish(self) -> "Report":
        for kind, n in self._kinds.items():
            if n > MAX_PER_KIND:
                self.errors.append(f"… and {n - MAX_PER_KIND} more problem(s) like this: {kind}")
        return self

    def fixes(self) -> list[str]:
        """One line per thing stage 2 fixes or filters, with counts."""
        lines = []
        if self.resample:
            rates = ", ".join(f"{rate} Hz: {n}" for rate, n in sorted(self.resample.items()))
            lines.append(f"resampled to {TARGET_SAMPLE_RATE} Hz: {sum(self.resample.values())} audio ({rates})")
        if self.downmix:
            lines.append(f"downmixed to mono: {self.downmix} multi-channel audio")
        for ids, what in ((self.too_long, f"longer than --max_dur {self.max_dur:g} s"),
                          (self.too_short, f"shorter than --min_dur {self.min_dur:g} s"),
                          (self.silent, f"silence only (peak below {SILENCE_PEAK_DBFS:g} dBFS)")):
            if ids:
                lines.append(f"dropped: {len(ids)} utterance(s) {what}, e.g. '{ids[0]}'")
        return lines

    def summary(self) -> str:
        hours = f"{self.seconds / 3600:.2f} h" if self.seconds >= 3600 else f"{self.seconds / 60:.1f} min"
        state = "OK" if self.ok else f"{len(self.errors)} problem(s) to fix"
        text = f"{self.data_dir}: {self.num_utts} utterances, {self.num_audio} audio ({hours}): {state}"
        fixes = self.fixes()
        if fixes:
            text += "\nstage 2 will fix or filter (counted, not errors):\n" + "\n".join(f"  {f}" for f in fixes)
        return text


def read_lines(path: str, report: Report) -> list[Line]:
    """Lines of a Kaldi file as (line number, id, value); reports bad UTF-8, CRLF, tabs, id-only lines are kept."""
    with open(path, "rb") as f:
        raw_lines = f.read().split(b"\n")
    lines: list[Line] = []
    crlf, tabs = [], []
    for lineno, raw in enumerate(raw_lines, 1):
        if raw.endswith(b"\r"):
            crlf.append(lineno)
            raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            report.error(f"bad UTF-8 in {path}", (
                f"{path} line {lineno}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the "
                f"line); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > {path}.utf8 && "
                f"mv {path}.utf8 {path}`"))
            text = raw.decode("utf-8", errors="replace")
        if "\t" in text:
            tabs.append(lineno)
        parts = text.split(maxsplit=1)
        if parts:
            lines.append(Line(lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""))
    if crlf:
        report.error(f"CRLF in {path}", (
            f"{path} line {crlf[0]}: Windows line ending (CRLF) on {len(crlf)} line(s); convert the file with "
            f"`sed -i 's/\\r$//' {path}`"))
    if tabs:
        report.error(f"tabs in {path}", (
            f"{path} line {tabs[0]}: a tab in {len(tabs)} line(s); Kaldi files separate fields with one space, "
            f"fix with `sed -i 's/\\t/ /g' {path}`"))
    return lines


def check_ids(path: str, lines: Sequence[Line], report: Report) -> dict[str, Line]:
    """Unique and sorted utterance ids; returns the first line of each id."""
    first: dict[str, Line] = {}
    unsorted_reported = False
    previous = None
    for line in lines:
        if line.utt in first:
            report.error(f"repeated ids in {path}", (
                f"{path} line {line.lineno}: utterance '{line.utt}' repeats line {first[line.utt].lineno}; "
                "utterance ids must be unique: remove or rename one of them in data prep"))
            continue
        first[line.utt] = line
        if previous is not None and line.utt < previous.utt and not unsorted_reported:
            report.error(f"unsorted {path}", (
                f"{path} line {line.lineno}: utterance '{line.utt}' comes after '{previous.utt}' (line "
                f"{previous.lineno}), but the file must be sorted by utterance id: `LC_ALL=C sort -o {path} {path}`"))
            unsorted_reported = True
        previous = line
    return first


def check_same_utts(ref_name: str, ref: dict[str, Line], name: str, other: dict[str, Line], report: Report,
                    needed: str) -> None:
    missing = [u for u in ref if u not in other]
    if missing:
        u = missing[0]
        report.error(f"missing in {name}", (
            f"{name} has no line for {len(missing)} utterance(s) of {ref_name}, e.g. '{u}' ({ref_name} line "
            f"{ref[u].lineno}); every utterance needs a line in each of {needed}: add them or drop the "
            "utterances in data prep"))
    for u in other:
        if u not in ref:
            report.error(f"extra in {name}", (
                f"{name} line {other[u].lineno}: utterance '{u}' is not in {ref_name}; remove the line or add the "
                f"utterance to {ref_name}"))


# what vocab.prompt_problems finds, as the report's kinds of problem and the fix each asks for
PROMPT_PROBLEMS = {
    "short": ("short prompts", "fix the prompt file in data prep"),
    "task": ("unknown tasks", "fix the prompt file in data prep"),
    "language": ("unknown languages", "fix the prompt, or add the language to `languages:` in the training config "
                                      "and pass --languages here"),
    "question": ("missing questions", "add the question or use another task"),
}


def check_prompt(path: str, lines: dict[str, Line], languages: Sequence[str], report: Report) -> None:
    for line in lines.values():
        _, problems = prompt_problems(line.value, languages)
        for kind, message in problems:
            what, fix = PROMPT_PROBLEMS[kind]
            report.error(f"{what} in {path}", f"{path} line {line.lineno}: utterance '{line.utt}': {message}; {fix}")


def check_text(path: str, lines: dict[str, Line], train: bool, report: Report) -> None:
    empty = [line for line in lines.values() if not line.value]
    if not empty:
        return
    if train:
        for line in empty:
            report.error(f"empty targets in {path}", (
                f"{path} line {line.lineno}: utterance '{line.utt}' has an empty target, and a training set needs "
                "one for every utterance; fill it in or drop the utterance in data prep"))
    else:
        report.warnings.append(f"{path}: {len(empty)} empty reference(s), e.g. '{empty[0].utt}' (line "
                               f"{empty[0].lineno}); they score against nothing")


def check_audio(path: str, lines: dict[str, Line], report: Report, progress: bool = True) -> None:
    """Probe each distinct wav.scp value once; errors for what stage 2 cannot use, counts for what it fixes."""
    groups: dict[str, list[Line]] = {}
    for line in lines.values():
        if not line.value:
            report.error(f"no audio in {path}", (
                f"{path} line {line.lineno}: utterance '{line.utt}' has no path or command; expected "
                "'<utt-id> <path or command |>'"))
            continue
        groups.setdefault(line.value, []).append(line)
    report.num_audio = len(groups)
    for value, group in tqdm(groups.items(), desc=f"validate audio of {path}", unit="audio", disable=not progress,
                             mininterval=2):
        first = group[0]
        entry = WavScpEntry(first.utt, value, path, first.lineno)
        try:
            info = probe_audio(entry)
        except AudioError as err:
            report.error(f"unreadable audio in {path}", str(err))
            continue
        ids = [line.utt for line in group]
        report.seconds += info.duration
        if info.sample_rate != TARGET_SAMPLE_RATE:
            report.resample[info.sample_rate] += 1
        if info.channels > 1:
            report.downmix += 1
        if report.max_dur and info.duration > report.max_dur:
            report.too_long += ids
        elif report.min_dur and info.duration < report.min_dur:
            report.too_short += ids
        elif info.peak_dbfs is not None and info.peak_dbfs < SILENCE_PEAK_DBFS:
            report.silent += ids
        elif info.duration * TARGET_SAMPLE_RATE < MIN_NUM_SAMPLES:
            report.error(f"too short audio in {path}", (
                f"{entry.where}: audio is {info.duration * 1000:.1f} ms long, shorter than the "
                f"{MIN_NUM_SAMPLES / TARGET_SAMPLE_RATE * 1000:.0f} ms one feature frame needs (0 frames); drop it "
                "in data prep or pass --min_dur"))


def check_frames(data_dir: str, feats: dict[str, Line], report: Report) -> None:
    """A dump dir: every utterance has more than 0 frames, and the arks feats.scp points at exist."""
    path = os.path.join(data_dir, "utt2num_frames")
    if os.path.isfile(path):
        frames = check_ids(path, read_lines(path, report), report)
        check_same_utts("feats.scp", feats, path, frames, report, "feats.scp and utt2num_frames")
        report.num_audio = len({line.value for line in feats.values()})
        report.seconds = sum(int(line.value) for line in frames.values() if line.value.isdigit()) / 50  # 50 Hz
        for line in frames.values():
            if not line.value.isdigit() or int(line.value) == 0:
                report.error(f"0 frames in {path}", (
                    f"{path} line {line.lineno}: utterance '{line.utt}' has {line.value or 'no'} frames (audio "
                    "shorter than 35 ms?); drop it in data prep and rerun stage 2"))
    else:
        report.error("no utt2num_frames", f"{path} is missing; rerun stage 2 (featurize) for {data_dir}")
    missing_arks = sorted({line.value.rpartition(":")[0] for line in feats.values()
                           if not os.path.isfile(line.value.rpartition(":")[0])})
    for ark in missing_arks:
        report.error("missing arks", f"{data_dir}/feats.scp points at {ark}, which does not exist; rerun stage 2")


def validate_data_dir(data_dir: str, train: bool = False, min_dur: float = 0.0, max_dur: float = 0.0,
                      languages: Iterable[str] = DEFAULT_LANGUAGES, audio: bool = True,
                      progress: bool = False) -> Report:
    """Check ``data_dir`` (see the module docstring); never raises for bad data, returns the :class:`Report`."""
    data_dir = os.path.normpath(data_dir)
    languages = tuple(languages)
    report = Report(data_dir, min_dur=min_dur, max_dur=max_dur)
    if not os.path.isdir(data_dir):
        report.errors.append(f"{data_dir} is not a directory: run data preparation (stage 1) first")
        return report
    if os.path.isfile(os.path.join(data_dir, "segments")):
        report.errors.append(
            f"{data_dir}/segments exists, but stage 2 reads one wav.scp entry per utterance; cut the segments in data "
            "prep (e.g. a wav.scp pipe `sox rec.wav -t wav - trim START =END |`)")
    is_dump = os.path.isfile(os.path.join(data_dir, "feats.scp")) and not os.path.isfile(
        os.path.join(data_dir, "wav.scp"))
    ref_name = "feats.scp" if is_dump else "wav.scp"
    required = [ref_name, "prompt"] + (["text"] if train else [])
    optional = [name for name in ("text", "utt2spk", "transcript") if name not in required]
    present = [name for name in optional if os.path.isfile(os.path.join(data_dir, name))]
    for name in required:
        if not os.path.isfile(os.path.join(data_dir, name)):
            why = " (a training set needs targets)" if name == "text" else ""
            report.errors.append(f"{data_dir}/{name} is missing{why}; data preparation (stage 1) must write it")
    files: dict[str, dict[str, Line]] = {}
    for name in required + present:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            files[name] = check_ids(path, read_lines(path, report), report)
            if not files[name]:
                report.errors.append(f"{path} is empty: data preparation produced no utterances")
    ref = files.get(ref_name)
    if ref:
        report.num_utts = len(ref)
        needed = ", ".join(n for n in [ref_name, "prompt", "text", "utt2spk"] if n in files)
        for name, lines in files.items():
            if name != ref_name and lines:
                check_same_utts(f"{data_dir}/{ref_name}", ref, f"{data_dir}/{name}", lines, report, needed)
    if files.get("prompt"):
        check_prompt(os.path.join(data_dir, "prompt"), files["prompt"], languages, report)
    if files.get("text"):
        check_text(os.path.join(data_dir, "text"), files["text"], train, report)
    if files.get("utt2spk"):
        for line in files["utt2spk"].values():
            if not line.value:
                report.error("empty utt2spk", (
                    f"{data_dir}/utt2spk line {line.lineno}: utterance '{line.utt}' has no speaker; write "
                    "'<utt-id> <speaker-id>' (the utterance id itself if speakers are unknown)"))
    if ref and is_dump:
        check_frames(data_dir, ref, report)
    elif ref and audio:
        check_audio(os.path.join(data_dir, "wav.scp"), ref, report, progress)
    return report.finish()
