"""What every corpus reader shares: layout checks with errors that name the db.sh variable, the utterance record,
audio durations, and writing one Kaldi data dir atomically.

Where it sits: recipe stage 1 of egs2/iwslt25_if/s2t1. The recipe's ``local/data.sh`` runs
``python -m espnet_speechlm_plugin.corpora.prepare``, which asks each reader module (librispeech.py, mls.py, ...)
for its data dirs as :class:`Plan` s and hands each plan to :func:`prepare_dir`. A data dir
``data/<corpus>_<lang-or-pair>_<split>/`` holds one task and contains

    wav.scp     utt /absolute/path/to/audio.{flac,mp3,wav,opus}   (any rate; stage 2 resamples to 16 kHz)
    text        utt target text (transcript, translation or answer)
    utt2spk     utt speaker       (every utterance id is "<speaker>-<rest>", so both sort the same way)
    spk2utt     speaker utt ...
    prompt      utt lang task [question]   (lang = language of the target; task transcribe|translate|answer)
    utt2dur     utt seconds       (from the file header via soundfile.info, no decoding)
    transcript  utt what the audio says, in its own language (scoring's task-confusion check)
    prep_info.json  where it came from (reader, source path, options), counts, hours, and what was dropped and why

Ids are ASCII without spaces and sorted in C-locale order (Python's str order for ASCII). Everything is written
to a hidden temporary directory and renamed into place, so a data dir that exists is complete; its
``prep_info.json`` fingerprint (reader version, source path, options) decides whether a rerun may skip it.
"""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import soundfile
from tqdm import tqdm

from espnet_speechlm_plugin.data.kaldi import replace_dir, write_atomic
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, PromptError, format_prompt, parse_prompt

DATA_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "prompt", "utt2dur", "transcript")
INFO_FILE = "prep_info.json"


class CorpusError(Exception):
    """A corpus that is missing, laid out differently than expected, or inconsistent. The message names the db.sh
    variable (or file and line) and says what to do."""


def log(message: str) -> None:
    print(f"data prep: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Layout checks
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One corpus location as db.sh names it."""

    variable: str  # the db.sh variable, e.g. "LIBRISPEECH"
    path: Optional[str]  # its value ("" or None = not set)
    corpus: str  # the --corpora name, e.g. "librispeech"
    layout: str  # the expected layout, one path pattern per line, relative to $VARIABLE

    def error(self, problem: str, hint: str = "") -> CorpusError:
        layout = "\n".join(f"    ${self.variable}/{line}" for line in self.layout.strip().splitlines())
        return CorpusError(
            f"corpus '{self.corpus}': {self.variable}={self.path or '(not set)'}: {problem}\n"
            f"  Expected layout:\n{layout}\n"
            + (f"  {hint}\n" if hint else "")
            + f"  Set {self.variable} in db.sh (or pass --corpora_root DIR to default every corpus under DIR), "
            f"or leave '{self.corpus}' out of --corpora."
        )

    def root(self) -> Path:
        """The directory, or a CorpusError naming the variable."""
        if not self.path:
            raise self.error("no path given")
        path = Path(self.path)
        if not path.is_dir():
            raise self.error("no such directory" if not path.exists() else "not a directory")
        return path.resolve()

    def need(self, relative: str | Path, kind: str = "file") -> Path:
        """``$VARIABLE/relative`` must exist as a file or dir; the error suggests a subdirectory that has it."""
        root = self.root()
        path = root / relative
        if (path.is_file() if kind == "file" else path.is_dir()):
            return path
        hint = ""
        for child in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            if (child / relative).exists():
                hint = f"Found it one level down: did you mean {self.variable}={child}?"
                break
        raise self.error(f"{kind} {relative} not found", hint)


# ---------------------------------------------------------------------------------------------------------------
# Reading corpus metadata
# ---------------------------------------------------------------------------------------------------------------

def normalize_text(text: str) -> str:
    """One line, single spaces: newlines and tabs inside a field would break the Kaldi line format."""
    return " ".join(text.split())


def read_tsv(path: Path, escapechar: Optional[str] = None, header: bool = True) -> list[tuple[int, dict | list]]:
    """(line number, row) of a tab-separated file. With ``header`` each row is a dict by column name and a row with
    another number of fields is a CorpusError naming the line. No quote handling (Common Voice, CoVoST and FLEURS
    write quotes literally); CoVoST's tsvs escape tabs and quotes with a backslash (``escapechar='\\\\'``)."""
    rows: list[tuple[int, dict | list]] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=escapechar)
        columns = next(reader, None) if header else None
        if header and not columns:
            raise CorpusError(f"{path} is empty: expected a header line with tab-separated column names")
        for fields in reader:
            lineno = reader.line_num
            if not fields or fields == [""]:
                continue
            if columns is None:
                rows.append((lineno, fields))
            elif len(fields) != len(columns):
                raise CorpusError(f"{path} line {lineno}: {len(fields)} tab-separated fields, the header has "
                                  f"{len(columns)} ({', '.join(columns)}); is the file truncated or edited?")
            else:
                rows.append((lineno, dict(zip(columns, fields))))
    return rows


def require_columns(path: Path, rows: list, needed: Iterable[str]) -> None:
    if rows:
        missing = [c for c in needed if c not in rows[0][1]]
        if missing:
            raise CorpusError(f"{path}: column(s) {', '.join(missing)} missing; found {', '.join(rows[0][1])}")


# ---------------------------------------------------------------------------------------------------------------
# Utterances and data dirs
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Utt:
    utt_id: str  # "<speaker>-<rest>"
    speaker: str
    audio: str  # absolute path soundfile can read
    text: str  # the target
    lang: str  # language of the target
    task: str
    question: str = ""  # only for task "answer"
    transcript: Optional[str] = None  # what the audio says, if known
    duration: Optional[float] = None  # seconds; read from the header when None


@dataclass
class Plan:
    """One data dir a reader offers: its name, what identifies its content, and how to make its utterances."""

    name: str  # e.g. "librispeech_en_train"
    fingerprint: dict  # reader, version, source path, options: a change rebuilds the dir
    produce: Callable[[], tuple[list[Utt], Counter]]  # -> (utterances, dropped counts by reason)
    optional: bool = False  # True: no utterances at all is not an error, the dir is just not written


def _valid_id(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and not any(c.isspace() for c in value)


def check_utts(name: str, utts: list[Utt]) -> None:
    """Programming or corpus errors that must not reach a data dir: bad ids, duplicates, unknown task/lang."""
    seen: set[str] = set()
    for u in utts:
        where = f"data dir {name}: utterance '{u.utt_id}'"
        if not _valid_id(u.utt_id) or not _valid_id(u.speaker):
            raise CorpusError(f"{where}: ids must be ASCII without spaces (speaker '{u.speaker}')")
        if not u.utt_id.startswith(u.speaker + "-"):
            raise CorpusError(f"{where}: the id must start with its speaker '{u.speaker}-'")
        if u.utt_id in seen:
            raise CorpusError(f"{where}: appears twice; the corpus lists this item more than once")
        seen.add(u.utt_id)
        try:  # the recipe's languages, a known task, a question for 'answer' ...
            parse_prompt(format_prompt(u.lang, u.task, u.question), DEFAULT_LANGUAGES, where)
        except PromptError as err:
            raise CorpusError(str(err)) from None
        if u.question and u.task != "answer":  # ... and only there
            raise CorpusError(f"{where}: a question is only used with task 'answer' (task '{u.task}')")
        for field_name in ("text", "question", "transcript"):
            value = getattr(u, field_name)
            if value is not None and value != normalize_text(value):
                raise CorpusError(f"{where}: {field_name} is not normalised to one line: {value!r}")
        if not u.text:
            raise CorpusError(f"{where}: empty target text")


def _info(path: str) -> Optional[float]:
    try:
        info = soundfile.info(path)
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    return info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else None


def audio_durations(paths: list[str], nj: int = 1, desc: str = "durations") -> dict[str, Optional[float]]:
    """Seconds per audio file from its header (soundfile.info); None for a file that is missing or unreadable."""
    unique = sorted(set(paths))
    show = len(unique) > 2000  # small sets finish before a bar would be useful
    if nj > 1 and len(unique) > 500:
        with multiprocessing.get_context("fork").Pool(nj) as pool:
            values = list(tqdm(pool.imap(_info, unique, chunksize=256), total=len(unique), desc=desc,
                               unit="file", disable=not show))
    else:
        values = [_info(p) for p in tqdm(unique, desc=desc, unit="file", disable=not show)]
    return dict(zip(unique, values))


def is_complete(out_dir: Path, fingerprint: dict) -> bool:
    info_path = out_dir / INFO_FILE
    if not info_path.is_file():
        return False
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return info.get("fingerprint") == fingerprint and all((out_dir / f).is_file() for f in DATA_FILES[:-1])


def write_data_dir(out_dir: Path, utts: list[Utt], fingerprint: dict, dropped: Counter | None = None,
                   nj: int = 1) -> dict:
    """Check, measure and write one data dir (see the module docstring); returns what went into prep_info.json.
    Utterances whose audio is missing or unreadable are dropped and counted; a dir left empty is an error."""
    out_dir = Path(out_dir)
    name = out_dir.name
    dropped = Counter(dropped or {})
    check_utts(name, utts)
    need = [u.audio for u in utts if u.duration is None]
    durations = audio_durations(need, nj, desc=f"{name}: durations") if need else {}
    kept: list[Utt] = []
    bad_examples: list[str] = []
    for u in utts:
        if u.duration is None:
            u.duration = durations[u.audio]
        if u.duration is None:
            dropped["audio missing or unreadable"] += 1
            if len(bad_examples) < 3:
                bad_examples.append(f"{u.utt_id}: {u.audio}")
            continue
        kept.append(u)
    if bad_examples:
        log(f"{name}: {dropped['audio missing or unreadable']} utterance(s) dropped, audio missing or unreadable, "
            f"e.g. {'; '.join(bad_examples)}")
    if not kept:
        raise CorpusError(f"data dir {name}: no utterances left ({dict(dropped) or 'the corpus lists none'}); "
                          "check that the corpus is complete (audio extracted next to its transcripts)")
    kept.sort(key=lambda u: u.utt_id)

    spk2utt: dict[str, list[str]] = {}
    for u in kept:
        spk2utt.setdefault(u.speaker, []).append(u.utt_id)
    files = {
        "wav.scp": [f"{u.utt_id} {u.audio}" for u in kept],
        "text": [f"{u.utt_id} {u.text}" for u in kept],
        "utt2spk": [f"{u.utt_id} {u.speaker}" for u in kept],
        "spk2utt": [" ".join([spk, *ids]) for spk, ids in sorted(spk2utt.items())],
        "prompt": [f"{u.utt_id} {format_prompt(u.lang, u.task, u.question)}" for u in kept],
        "utt2dur": [f"{u.utt_id} {u.duration:.3f}" for u in kept],
    }
    if all(u.transcript for u in kept):
        files["transcript"] = [f"{u.utt_id} {u.transcript}" for u in kept]
    tasks, langs = sorted({u.task for u in kept}), sorted({u.lang for u in kept})
    info = {
        "fingerprint": fingerprint,
        "utterances": len(kept),
        "speakers": len(spk2utt),
        "unique_audio": len({u.audio for u in kept}),
        "hours": round(sum(u.duration for u in kept) / 3600, 4),
        "max_seconds": round(max(u.duration for u in kept), 3),
        "task": tasks[0] if len(tasks) == 1 else tasks,
        "lang": langs[0] if len(langs) == 1 else langs,
        "dropped": dict(sorted(dropped.items())),
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_dir.parent))
    try:
        for fname, lines in files.items():
            write_atomic(tmp / fname, "".join(line + "\n" for line in lines))
        write_atomic(tmp / INFO_FILE, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
        replace_dir(tmp, out_dir)  # a stale dir (other options or an older reader) is replaced whole
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def prepare_dir(out_root: Path, plan: Plan, nj: int = 1) -> str:
    """Write ``out_root/plan.name`` unless it is complete with the same fingerprint; returns a one-line summary."""
    out_dir = Path(out_root) / plan.name
    if is_complete(out_dir, plan.fingerprint):
        return f"{out_dir}: complete, skipping"
    utts, dropped = plan.produce()
    if plan.optional and not utts:
        return f"{out_dir}: not written, no utterances ({dict(dropped)})"
    info = write_data_dir(out_dir, utts, plan.fingerprint, dropped, nj)
    extra = f", dropped {info['dropped']}" if info["dropped"] else ""
    return (f"{out_dir}: {info['utterances']} utterances, {info['speakers']} speakers, {info['hours']:.2f} h, "
            f"task {info['task']}, lang {info['lang']}{extra}")


def fingerprint(reader: str, version: int, source: Path | str, **options) -> dict:
    return {"reader": reader, "version": version, "source": str(source), **options}
