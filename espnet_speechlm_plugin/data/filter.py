"""What a training stage drops from its sources, and why, counted per source: evaluation clips and duration caps.

Where it sits: ``bin/make_mix.py`` (the start of recipe stage 2) first removes from every training source each
utterance whose audio belongs to an evaluation set (any valid or test data dir; :class:`EvalClips`), then applies
a mix's caps (``max_duration`` / ``min_duration`` in ``conf/train_mix_stage*.yaml``; the authors cap stage-1
audio at 90 s and stage-2 audio at 45 s) to the source's ``utt2dur``, before anything is featurized. Nothing is
dropped silently: every dropped utterance gets a reason, the counts per source and reason go to the log and to a
report file, and the dropped utterances are listed one per line.

An evaluation clip is found three ways, because the same recording reaches several data dirs under other ids
(CoVoST 2 translates Common Voice clips, so its dev and test clips are also Common Voice training clips):

  same file       the wav.scp value names the same file (paths compared after resolving symlinked folders)
  same clip       the same clip name (its folder's name and its file name without extension, e.g.
                  ``clips/common_voice_en_104``) with the same duration to the millisecond: one recording in two
                  copies of a corpus (e.g. Common Voice release 4, which CoVoST 2 uses, and a newer release holding
                  the same clips). The folder name keeps apart files numbered alike in different splits
                  (Spoken-SQuAD's ``train_wav/0_0_0.wav`` and ``dev_wav/0_0_0.wav``)
  same sentence   the same normalised sentence (what the audio says: ``transcript``, or the ``text`` of a
                  transcription dir) said by the same speaker (the ``utt2spk`` value after its first "-": the
                  readers write ``<corpus>_<lang>-<speaker>``), where the files differ (re-encoded audio, a repeat
                  recording)
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

# reason keys, in the order reports list them (an evaluation clip is removed before the caps are looked at)
IN_EVAL, TOO_LONG, TOO_SHORT, NO_DURATION = "in_eval", "too_long", "too_short", "no_duration"
REASONS = (IN_EVAL, TOO_LONG, TOO_SHORT, NO_DURATION)
# how an utterance matched an evaluation clip, in the order they are tried
SAME_FILE, SAME_CLIP, SAME_SENTENCE = "same_file", "same_clip", "same_sentence"
MATCH_KINDS = (SAME_FILE, SAME_CLIP, SAME_SENTENCE)


@dataclass(frozen=True)
class DurationCaps:
    """Keep ``min_duration <= seconds <= max_duration`` (0 or None: no bound on that side)."""

    max_duration: Optional[float] = None
    min_duration: Optional[float] = None

    def __post_init__(self):
        for name in ("max_duration", "min_duration"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a number of seconds >= 0 (or null), not {value!r}")
        if self.max_duration and self.min_duration and self.min_duration > self.max_duration:
            raise ValueError(f"min_duration {self.min_duration} is larger than max_duration {self.max_duration}")

    def reason(self, seconds: Optional[float]) -> Optional[str]:
        """None to keep the utterance, else the reason key it is dropped for."""
        if seconds is None:
            return NO_DURATION
        if self.max_duration and seconds > self.max_duration:
            return TOO_LONG
        if self.min_duration and seconds < self.min_duration:
            return TOO_SHORT
        return None

    def describe(self, reason: str) -> str:
        return {TOO_LONG: f"longer than max_duration {self.max_duration:g} s" if self.max_duration else TOO_LONG,
                TOO_SHORT: f"shorter than min_duration {self.min_duration:g} s" if self.min_duration else TOO_SHORT,
                NO_DURATION: "no line in utt2dur"}[reason]


def apply_caps(utt_ids, utt2dur: Mapping[str, float], caps: DurationCaps) -> Tuple[list, Dict[str, str]]:
    """(kept utterance ids in input order, {dropped utterance: reason key})."""
    kept, dropped = [], {}
    for utt in utt_ids:
        why = caps.reason(utt2dur.get(utt))
        if why is None:
            kept.append(utt)
        else:
            dropped[utt] = why
    return kept, dropped


@dataclass
class SourceReport:
    """What the caps did to one source data dir: utterance counts and hours before and after."""

    name: str
    total: int = 0
    kept: int = 0
    seconds_total: float = 0.0
    seconds_kept: float = 0.0
    dropped: Counter = None

    def __post_init__(self):
        self.dropped = Counter() if self.dropped is None else self.dropped


def source_report(name: str, utt_ids, utt2dur: Mapping[str, float], dropped: Mapping[str, str]) -> SourceReport:
    rep = SourceReport(name)
    for utt in utt_ids:
        seconds = utt2dur.get(utt) or 0.0
        rep.total += 1
        rep.seconds_total += seconds
        if utt in dropped:
            rep.dropped[dropped[utt]] += 1
        else:
            rep.kept += 1
            rep.seconds_kept += seconds
    return rep


def format_report(title: str, caps: DurationCaps, reports: list) -> str:
    """A plain-text table: one row per source, one column per drop reason, and a total row."""
    header = f"{'source':<34}{'utterances':>11}{'kept':>9}{'hours kept':>12}" + "".join(f"{r:>13}" for r in REASONS)
    bounds = (f"max_duration {caps.max_duration or 'none'} s, min_duration {caps.min_duration or 'none'} s")
    lines = [f"{title}: duration caps {bounds}", header]
    total = SourceReport("total")
    for rep in reports:
        lines.append(f"{rep.name:<34}{rep.total:>11,}{rep.kept:>9,}{rep.seconds_kept / 3600:>12.2f}"
                     + "".join(f"{rep.dropped[r]:>13,}" for r in REASONS))
        total.total += rep.total
        total.kept += rep.kept
        total.seconds_kept += rep.seconds_kept
        total.seconds_total += rep.seconds_total
        total.dropped.update(rep.dropped)
    lines.append(f"{'total':<34}{total.total:>11,}{total.kept:>9,}{total.seconds_kept / 3600:>12.2f}"
                 + "".join(f"{total.dropped[r]:>13,}" for r in REASONS))
    hours_dropped = (total.seconds_total - total.seconds_kept) / 3600
    lines.append(f"dropped {total.total - total.kept:,} of {total.total:,} utterances ({hours_dropped:.2f} h)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Evaluation clips
# ---------------------------------------------------------------------------------------------------------------

_ARK_OFFSET = re.compile(r"^(.*\.ark):(\d+)$")
_NOT_A_WORD = re.compile(r"[\W_]+")  # punctuation, symbols, spaces (letters and digits of any script are words)


@functools.lru_cache(maxsize=None)
def _real_dir(directory: str) -> str:
    # one realpath per folder, not per file: a corpus has millions of clips in a few thousand folders
    return os.path.realpath(directory or ".")


def audio_keys(value: str) -> Tuple[str, Optional[str]]:
    """(what identifies a wav.scp value's audio, its clip name). The first is the file with its folder resolved (a
    symlinked corpus folder compares equal to the real one), the ark file and offset, or a pipe command as written;
    the clip name is the folder's name and the file name without extension (``clips/common_voice_en_104``), None
    for pipes and ark offsets."""
    value = value.strip()
    if value.endswith("|"):
        return " ".join(value.split()), None
    ark = _ARK_OFFSET.match(value) if ".ark:" in value else None
    if ark:
        return f"{os.path.join(_real_dir(os.path.dirname(ark[1])), os.path.basename(ark[1]))}:{ark[2]}", None
    folder, name = os.path.split(value)
    stem = os.path.splitext(name)[0]
    return os.path.join(_real_dir(folder), name), f"{os.path.basename(folder)}/{stem}" if stem else None


def normalize_sentence(text: Optional[str]) -> str:
    """Case, punctuation and spacing removed, so 'My book, "Ulysses".' and 'MY BOOK ULYSSES' compare equal."""
    if not text:
        return ""
    return " ".join(_NOT_A_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).split())


def speaker_key(speaker: Optional[str]) -> str:
    """The speaker without the data dir's tag: ``cv_en-0a1b`` and ``covost2_en_de-0a1b`` are one speaker."""
    if not speaker:
        return ""
    return speaker.split("-", 1)[1] if "-" in speaker else speaker


@dataclass(frozen=True)
class Clip:
    """One utterance as the overlap check sees it."""

    utt: str
    audio: str  # the wav.scp value
    duration: Optional[float] = None  # seconds (utt2dur)
    speaker: Optional[str] = None  # the utt2spk value
    sentence: Optional[str] = None  # what the audio says


@dataclass(frozen=True)
class Overlap:
    """Why a training utterance is an evaluation clip: how it matched, and the evaluation utterance it matched."""

    kind: str  # one of MATCH_KINDS
    eval_set: str  # the evaluation data dir
    eval_utt: str

    def describe(self) -> str:
        how = {SAME_FILE: "same audio file as", SAME_CLIP: "same clip name and duration as",
               SAME_SENTENCE: "same sentence and speaker as"}[self.kind]
        return f"evaluation clip: {how} '{self.eval_utt}' of {self.eval_set}"


class EvalClips:
    """Every utterance of the evaluation sets (valid and test data dirs), indexed by audio file, by clip name and
    duration, and by sentence and speaker; :meth:`find` tells whether a training utterance is one of them."""

    def __init__(self):
        self.sets: List[str] = []
        self.size = 0
        self._file: Dict[str, Tuple[str, str]] = {}
        self._clip: Dict[Tuple[str, str], Tuple[str, str]] = {}
        self._sentence: Dict[Tuple[str, str], Tuple[str, str]] = {}
        self._speakers: set = set()  # speakers of _sentence: most training utterances skip normalising their text

    def add(self, eval_set: str, clips) -> None:
        """Index the clips of one evaluation data dir (the first set to list a key keeps it)."""
        self.sets.append(eval_set)
        for clip in clips:
            self.size += 1
            ref = (eval_set, clip.utt)
            key, name = audio_keys(clip.audio)
            self._file.setdefault(key, ref)
            if name and clip.duration is not None:
                self._clip.setdefault((name, f"{clip.duration:.3f}"), ref)
            sentence, speaker = normalize_sentence(clip.sentence), speaker_key(clip.speaker)
            if sentence and speaker:
                self._sentence.setdefault((sentence, speaker), ref)
                self._speakers.add(speaker)

    def find(self, clip: Clip) -> Optional[Overlap]:
        """The first match of ``clip`` (same file, then same clip, then same sentence and speaker), or None."""
        key, name = audio_keys(clip.audio)
        ref = self._file.get(key)
        if ref:
            return Overlap(SAME_FILE, *ref)
        if name and clip.duration is not None:
            ref = self._clip.get((name, f"{clip.duration:.3f}"))
            if ref:
                return Overlap(SAME_CLIP, *ref)
        speaker = speaker_key(clip.speaker)
        if speaker in self._speakers:
            ref = self._sentence.get((normalize_sentence(clip.sentence), speaker))
            if ref:
                return Overlap(SAME_SENTENCE, *ref)
        return None


@dataclass
class OverlapReport:
    """The evaluation clips removed from one training source: counted by kind of match and by evaluation set."""

    name: str
    total: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_set: Counter = field(default_factory=Counter)


def overlap_report(name: str, n_utts: int, found: Mapping[str, Overlap]) -> OverlapReport:
    rep = OverlapReport(name, n_utts)
    for overlap in found.values():
        rep.by_kind[overlap.kind] += 1
        rep.by_set[overlap.eval_set] += 1
    return rep


def format_overlap_report(clips: EvalClips, reports: List[OverlapReport]) -> str:
    """A plain-text table: evaluation clips removed per training source, per kind of match, and from which set."""
    header = f"{'source':<34}{'utterances':>11}{'removed':>9}" + "".join(f"{k:>15}" for k in MATCH_KINDS)
    lines = [f"evaluation clips removed from the training sources (checked against {clips.size:,} utterances of "
             f"{len(clips.sets)} valid/test data dirs: {', '.join(clips.sets) or 'none'})", header]
    total = OverlapReport("total")
    for rep in reports:
        removed = sum(rep.by_kind.values())
        sets = ", ".join(f"{s} {n:,}" for s, n in sorted(rep.by_set.items()))
        lines.append(f"{rep.name:<34}{rep.total:>11,}{removed:>9,}"
                     + "".join(f"{rep.by_kind[k]:>15,}" for k in MATCH_KINDS) + (f"   ({sets})" if sets else ""))
        total.total += rep.total
        total.by_kind.update(rep.by_kind)
    lines.append(f"{'total':<34}{total.total:>11,}{sum(total.by_kind.values()):>9,}"
                 + "".join(f"{total.by_kind[k]:>15,}" for k in MATCH_KINDS))
    return "\n".join(lines)
