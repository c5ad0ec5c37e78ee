"""Kaldi-style data-dir files: ``utt value`` lines read into dicts, and files and dirs written atomically.

Shared by the stages that read data dirs (decoding, tiny-model pretraining, scoring).
"""

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence


class KaldiFileError(ValueError):
    """A malformed data-dir file; the message names the file, line and utterance."""


def read_kaldi_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, utterance id, value) of each non-blank line; the value is the rest of the line (inner
    spaces kept) and "" for an id-only line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            rows.append((lineno, parts[0], parts[1] if len(parts) > 1 else ""))
    return rows


def read_kaldi_values(paths: Sequence[str]) -> List[str]:
    """The text after the utterance id of every line of Kaldi-style files (``text``, ``prompt``), in order: what
    tokenizers are trained on."""
    texts = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            texts += [line.rstrip("\n").partition(" ")[2] for line in f]
    return texts


def read_kaldi_text(path: Path) -> dict[str, str]:
    """`utt value` lines as a dict; a repeated utterance id is an error."""
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, utt, value in read_kaldi_lines(path):
        if utt in out:
            raise KaldiFileError(f"{path} line {lineno}: utterance '{utt}' repeats line {first_line[utt]}")
        out[utt], first_line[utt] = value, lineno
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_kaldi_text(path: Path, values: Dict[str, str]) -> None:
    """``utt value`` lines sorted by utterance id, written atomically."""
    write_atomic(path, "".join(f"{u} {values[u]}\n" for u in sorted(values)))


def replace_dir(tmp: Path, out: Path) -> None:
    """Put the fully written directory ``tmp`` at ``out``, replacing whatever is there.

    A directory cannot replace another in one rename: the old one goes to ``.<name>.old`` first and is deleted
    after, so a kill at any moment leaves ``out`` complete, or missing with ``.<name>.old`` beside it, which
    :func:`recover_dir` puts back.
    """
    tmp, out = Path(tmp), Path(out)
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(out: Path) -> None:
    """Undo a :func:`replace_dir` that a kill interrupted between its two renames."""
    out = Path(out)
    old = out.with_name(f".{out.name}.old")
    if old.exists() and not out.exists():
        os.replace(old, out)
