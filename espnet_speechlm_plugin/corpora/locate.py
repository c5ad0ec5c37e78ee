"""Find each corpus under ``--corpora_root`` by the folder name its release unpacks to.

Where it sits: stage 1 of egs2/iwslt25_if/s2t1. The recipe's ``local/data.sh --corpora_root DIR`` passes DIR to
``prepare.py``, which asks :func:`locate` for every db.sh variable that is not set. A variable set in db.sh (or
exported) always wins, so one corpus elsewhere, or a choice between two releases, is one line in db.sh.

What is looked for, relative to DIR (a folder must match exactly one pattern's worth of candidates):

    LIBRISPEECH     LibriSpeech                        every openslr.org/12 tarball unpacks into LibriSpeech/
    MLS_DE, MLS_IT  mls_german, mls_german_opus        mls_<language>.tar.gz (flac) or mls_<language>_opus.tar.gz
                    (mls_italian, mls_italian_opus)    from openslr.org/94
    COMMONVOICE     cv-corpus-*                        a release unpacks to cv-corpus-<version>-<date>/<locale>/,
                                                       e.g. cv-corpus-17.0-2024-03-15/en/
    COVOST2_CV_EN   <COMMONVOICE>/en; with several     CoVoST 2 is defined on Common Voice 2019-12-10 (release 4)
                    releases, cv-corpus-4-2019-12-10/en
    COVOST2         the folder holding covost_v2.en_*.tsv (or the split tsvs), at most two levels down:
                    the covost_v2.en_<tgt>.tsv.tar.gz archives hold the bare tsv, so the folder is the user's
    FLEURS          fleurs, datasets--google--fleurs/snapshots/*    a clone of huggingface.co/datasets/google/fleurs,
                                                                    or the hub cache's snapshot
    SPOKEN_SQUAD    Spoken-SQuAD*                      a clone of the GitHub repository (Spoken-SQuAD-master from
                                                       its zip), with Spoken-SQuAD_audio/ unzipped inside
    ACL6060         2/acl_6060, */2/acl_6060, acl_6060, */acl_6060   2023.iwslt-1.2.dataset.zip unpacks to 2/acl_6060/

No candidate, or several, is a :class:`CorpusError` that names the variable, every path looked at (or every
candidate) and what to set in db.sh.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from espnet_speechlm_plugin.corpora.common import CorpusError

CV_COVOST2_RELEASE = "cv-corpus-4-2019-12-10"


def _dirs(root: Path, patterns: tuple[str, ...], holds: Callable[[Path], bool] = lambda p: True) -> list[Path]:
    found = {p for pattern in patterns for p in root.glob(pattern) if p.is_dir() and holds(p)}
    return sorted(found)


def _covost2_dirs(root: Path) -> list[Path]:
    tsvs = [p for depth in ("", "*/", "*/*/") for p in root.glob(f"{depth}covost_v2.en_*.tsv") if p.is_file()]
    return sorted({p.parent for p in tsvs})


# variable -> (corpus as --corpora names it, patterns shown in messages, how to list the candidates)
FINDERS: dict[str, tuple[str, tuple[str, ...], Callable[[Path], list[Path]]]] = {
    "LIBRISPEECH": ("librispeech", ("LibriSpeech",), lambda r: _dirs(r, ("LibriSpeech",))),
    "MLS_DE": ("mls", ("mls_german", "mls_german_opus"), lambda r: _dirs(r, ("mls_german", "mls_german_opus"))),
    "MLS_IT": ("mls", ("mls_italian", "mls_italian_opus"),
               lambda r: _dirs(r, ("mls_italian", "mls_italian_opus"))),
    "COMMONVOICE": ("cv", ("cv-corpus-*",), lambda r: _dirs(r, ("cv-corpus-*",))),
    "COVOST2": ("covost2", ("covost_v2.en_*.tsv", "*/covost_v2.en_*.tsv", "*/*/covost_v2.en_*.tsv"),
                _covost2_dirs),
    "FLEURS": ("fleurs", ("fleurs", "datasets--google--fleurs/snapshots/*"),
               lambda r: _dirs(r, ("fleurs", "datasets--google--fleurs/snapshots/*"))),
    "SPOKEN_SQUAD": ("spokensquad", ("Spoken-SQuAD*",), lambda r: _dirs(r, ("Spoken-SQuAD*",))),
    "ACL6060": ("acl6060", ("2/acl_6060", "*/2/acl_6060", "acl_6060", "*/acl_6060"),
                lambda r: _dirs(r, ("2/acl_6060", "*/2/acl_6060", "acl_6060", "*/acl_6060"))),
}


def _one(variable: str, root: Path, candidates: list[Path], patterns: tuple[str, ...]) -> str:
    corpus = FINDERS[variable][0] if variable in FINDERS else "covost2"
    if len(candidates) == 1:
        return str(candidates[0])
    if not candidates:
        looked = ", ".join(str(root / p) for p in patterns)
        raise CorpusError(f"corpus '{corpus}': {variable} is not set and --corpora_root {root} holds none of: "
                          f"{looked}\n  Set {variable} in db.sh (or export it), or leave '{corpus}' out of --corpora.")
    listed = "\n".join(f"    {c}" for c in candidates)
    raise CorpusError(f"corpus '{corpus}': {variable} is not set and --corpora_root {root} holds "
                      f"{len(candidates)} candidates:\n{listed}\n  Set {variable} in db.sh (or export it) to the one "
                      "to use.")


def locate(variable: str, root: str | Path) -> str:
    """The folder for a db.sh variable under ``root`` (see the module docstring), or a CorpusError."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"--corpora_root {root}: no such directory")
    if variable == "COVOST2_CV_EN":
        releases = FINDERS["COMMONVOICE"][2](root)
        english = [r / "en" for r in releases if (r / "en").is_dir()]
        covost_release = [e for e in english if e.parent.name == CV_COVOST2_RELEASE]
        return _one(variable, root, covost_release if len(english) > 1 and covost_release else english,
                    ("cv-corpus-*/en",))
    _, patterns, find = FINDERS[variable]
    return _one(variable, root, find(root), patterns)


# which db.sh variables each --corpora name needs
NEEDS = {
    "librispeech": ("LIBRISPEECH",),
    "mls": ("MLS_DE", "MLS_IT"),
    "cv": ("COMMONVOICE",),
    "covost2": ("COVOST2", "COVOST2_CV_EN"),
    "fleurs": ("FLEURS",),
    "spokensquad": ("SPOKEN_SQUAD",),
    "acl6060": ("ACL6060",),
}
