"""LibriSpeech (OpenSLR 12) → English transcription data dirs.

Layout as distributed (each ``<subset>.tar.gz`` of openslr.org/12 unpacks into ``LibriSpeech/<subset>/``, e.g.
``tar xzf test-other.tar.gz`` gives ``LibriSpeech/test-other/``), see openslr.org/12 and the corpus README:

    $LIBRISPEECH/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac      16 kHz FLAC
    $LIBRISPEECH/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt       "<speaker>-<chapter>-<utt> TEXT"

Data dirs: ``librispeech_en_train`` (every ``train-*`` subset present: train-clean-100, train-clean-360,
train-other-500), ``librispeech_en_dev`` (dev-clean), ``librispeech_en_test-clean`` and
``librispeech_en_test-other`` (the two test sets ASR results are reported on, each when present); task
transcribe.
Transcripts are kept as distributed (upper case, no punctuation). Speaker "librispeech_en-<speaker>", utterance
"<speaker>-<chapter>-<utt>" after it.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from espnet_speechlm_plugin.corpora.common import CorpusError, Plan, Source, Utt, fingerprint, normalize_text

VERSION = 2
LAYOUT = """
<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac     (subset: train-clean-100, dev-clean, test-other, ...)
<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt
"""
SPLITS = {"dev": ("dev-clean",), "test-clean": ("test-clean",), "test-other": ("test-other",)}


def source(path: str | None) -> Source:
    return Source("LIBRISPEECH", path, "librispeech", LAYOUT)


def subsets(src: Source) -> dict[str, list[Path]]:
    """split -> subset dirs present; at least one train-* subset is required."""
    root = src.root()
    train = sorted(p for p in root.glob("train-*") if p.is_dir())
    if not train:
        inside = root / "LibriSpeech"
        hint = f"Found it one level down: did you mean LIBRISPEECH={inside}?" if inside.is_dir() else ""
        raise src.error("no train-* subset directory (e.g. train-clean-100/)", hint)
    out = {"train": train}
    for split, names in SPLITS.items():
        present = [root / n for n in names if (root / n).is_dir()]
        if present:
            out[split] = present
    return out


def read_subset(subset: Path, speaker_prefix: str) -> tuple[list[Utt], Counter]:
    utts: list[Utt] = []
    dropped: Counter = Counter()
    for trans in sorted(subset.glob("*/*/*.trans.txt")):
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.split(maxsplit=1)
                native = parts[0]
                fields = native.split("-")
                if len(fields) != 3:
                    raise CorpusError(f"{trans} line {lineno}: utterance id {native!r} is not "
                                      "<speaker>-<chapter>-<utt>")
                text = normalize_text(parts[1]) if len(parts) > 1 else ""
                if not text:
                    dropped["empty transcript"] += 1
                    continue
                speaker = f"{speaker_prefix}-{fields[0]}"
                utts.append(Utt(f"{speaker}-{fields[1]}-{fields[2]}", speaker, str(trans.parent / f"{native}.flac"),
                                text, "en", "transcribe", transcript=text))
    if not utts and not dropped:
        raise CorpusError(f"{subset}: no <speaker>/<chapter>/*.trans.txt found; is the subset fully extracted?")
    return utts, dropped


def plans(path: str | None, **_options) -> list[Plan]:
    src = source(path)
    found = subsets(src)
    out = []
    for split, dirs in found.items():
        def produce(dirs=dirs):
            utts, dropped = [], Counter()
            for d in dirs:
                u, dr = read_subset(d, "librispeech_en")
                utts += u
                dropped += dr
            return utts, dropped

        out.append(Plan(f"librispeech_en_{split}",
                        fingerprint("librispeech", VERSION, src.root(), subsets=[d.name for d in dirs]), produce))
    return out
