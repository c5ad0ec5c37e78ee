"""Multilingual LibriSpeech (OpenSLR 94), German and Italian → transcription data dirs.

Layout as distributed (``mls_german.tar.gz`` = FLAC at 16 kHz, ``mls_german_opus.tar.gz`` = Opus; same for
``mls_italian``), following the corpus release and Facebook's wav2letter ``recipes/mls/prepare.py``:

    $MLS_DE/{train,dev,test}/transcripts.txt       "<speaker>_<book>_<idx>\\t<text>" per line
    $MLS_DE/{train,dev,test}/segments.txt          source URL and times (not needed here)
    $MLS_DE/{train,dev,test}/audio/<speaker>/<book>/<speaker>_<book>_<idx>.flac   (.opus in the opus release)

Data dirs: ``mls_de_{train,dev,test}``, ``mls_it_{train,dev,test}``; task transcribe. Transcripts are kept as
distributed (lower case, no punctuation). Speaker "mls_<lang>-<speaker>", then "<book>_<idx>".
"""
from __future__ import annotations

from collections import Counter

from espnet_speechlm_plugin.corpora.common import CorpusError, Plan, Source, Utt, fingerprint, normalize_text

VERSION = 1
LAYOUT = """
{train,dev,test}/transcripts.txt                           (<speaker>_<book>_<idx> TAB text)
{train,dev,test}/audio/<speaker>/<book>/<speaker>_<book>_<idx>.flac   (or .opus)
"""
VARIABLES = {"de": "MLS_DE", "it": "MLS_IT"}
SPLITS = ("train", "dev", "test")
EXTENSIONS = (".flac", ".opus")


def source(lang: str, path: str | None) -> Source:
    return Source(VARIABLES[lang], path, "mls", LAYOUT)


def read_split(src: Source, split: str, lang: str) -> tuple[list[Utt], Counter]:
    transcripts = src.need(f"{split}/transcripts.txt")
    audio_root = src.need(f"{split}/audio", kind="dir")
    utts: list[Utt] = []
    dropped: Counter = Counter()
    with open(transcripts, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            native, sep, text = line.rstrip("\n").partition("\t")
            fields = native.split("_")
            if not sep or len(fields) != 3:
                raise CorpusError(f"{transcripts} line {lineno}: expected '<speaker>_<book>_<idx>' TAB text, got "
                                  f"{line.strip()[:80]!r}")
            text = normalize_text(text)
            if not text:
                dropped["empty transcript"] += 1
                continue
            stem = audio_root / fields[0] / fields[1] / native
            audio = next((stem.with_suffix(ext) for ext in EXTENSIONS if stem.with_suffix(ext).is_file()),
                         stem.with_suffix(EXTENSIONS[0]))  # a missing file is counted when durations are read
            speaker = f"mls_{lang}-{fields[0]}"
            utts.append(Utt(f"{speaker}-{fields[1]}_{fields[2]}", speaker, str(audio), text, lang, "transcribe",
                            transcript=text))
    return utts, dropped


def plans(paths: dict[str, str | None], langs=("de", "it"), **_options) -> list[Plan]:
    out, errors = [], []
    for lang in langs:
        if lang not in VARIABLES:
            raise CorpusError(f"MLS: language {lang!r} is not prepared here; choose from {', '.join(VARIABLES)}")
        src = source(lang, paths.get(lang))
        try:
            src.need("train/transcripts.txt")  # check the layout now, before any other corpus is read
        except CorpusError as err:
            errors.append(str(err))  # report every language, not just the first
            continue
        for split in SPLITS:
            if not (src.root() / split / "transcripts.txt").is_file():
                continue
            out.append(Plan(f"mls_{lang}_{split}", fingerprint("mls", VERSION, src.root(), split=split),
                            lambda src=src, split=split, lang=lang: read_split(src, split, lang)))
    if errors:
        raise CorpusError("\n\nERROR: ".join(errors))
    return out
