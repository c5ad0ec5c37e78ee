"""ACL 60/60 (IWSLT 2023 evaluation data; the IWSLT 2025 instruction-following dev set) → English transcription
and en→de / en→zh translation data dirs over the gold-segmented sentence audio.

Layout as distributed (``2023.iwslt-1.2.dataset.zip`` from the ACL Anthology unpacks to ``2/acl_6060/``; used
this way by the IWSLT 2025 baselines, github.com/pe-trik/iwslt25-baselines ``data/``):

    $ACL6060/2/acl_6060/{dev,eval}/segmented_wavs/gold/sent_<N>.wav      16 kHz wav, N = 1, 2, ... (sentence N)
    $ACL6060/2/acl_6060/{dev,eval}/text/txt/ACL.6060.<split>.en-xx.<lang>.txt   line N = sentence N (en, de, zh, ...)
    $ACL6060/2/acl_6060/{dev,eval}/text/xml/ACL.6060.<split>.en-xx.en.xml   <doc docid="<talk>"><seg id="N">...
    $ACL6060/2/acl_6060/{dev,eval}/full_wavs/<talk>.wav                   whole talks (not needed here)

``$ACL6060`` may also point at ``2/`` or at ``acl_6060/``. The English XML gives each sentence its talk, which
becomes the speaker "acl6060_<lang-or-pair>-<talk>"; utterance "<speaker>-sent_<NNNN>" (zero-padded so that ids
sort in talk order). Data dirs: ``acl6060_en_<split>`` (transcribe), ``acl6060_en_de_<split>`` and
``acl6060_en_zh_<split>`` (translate), for split dev (required) and eval (when present); ``transcript`` = the
English sentence.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from espnet_speechlm_plugin.corpora.common import CorpusError, Plan, Source, Utt, fingerprint, normalize_text

VERSION = 1
LAYOUT = """
2/acl_6060/dev/segmented_wavs/gold/sent_<N>.wav
2/acl_6060/dev/text/txt/ACL.6060.dev.en-xx.{en,de,zh}.txt    (line N = sentence N)
2/acl_6060/dev/text/xml/ACL.6060.dev.en-xx.en.xml            (<doc docid=TALK> <seg id=N>)
"""
SPLITS = ("dev", "eval")
_DOC = re.compile(r'<doc\s[^>]*docid="([^"]+)"[^>]*>(.*?)</doc>', re.S)
_SEG = re.compile(r'<seg\s[^>]*id="(\d+)"')


def source(path: str | None) -> Source:
    return Source("ACL6060", path, "acl6060", LAYOUT)


def split_dir(src: Source, split: str) -> Path | None:
    root = src.root()
    for cand in (root / "2" / "acl_6060" / split, root / "acl_6060" / split, root / split):
        if (cand / "segmented_wavs" / "gold").is_dir():
            return cand
    return None


def read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise CorpusError(f"ACL 60/60: {path} not found (ACL6060 variable in db.sh)")
    with open(path, encoding="utf-8") as f:
        return [normalize_text(line) for line in f.read().splitlines()]


def talks(xml: Path) -> dict[int, str]:
    """sentence number -> talk id, from the English XML."""
    if not xml.is_file():
        raise CorpusError(f"ACL 60/60: {xml} not found (ACL6060 variable in db.sh)")
    out: dict[int, str] = {}
    for talk, body in _DOC.findall(xml.read_text(encoding="utf-8")):
        for seg in _SEG.findall(body):
            out[int(seg)] = talk
    if not out:
        raise CorpusError(f"{xml}: no <doc docid=...> with <seg id=...> found")
    return out


def read_split(directory: Path, split: str, tgt: str | None) -> tuple[list[Utt], Counter]:
    txt = directory / "text" / "txt"
    english = read_lines(txt / f"ACL.6060.{split}.en-xx.en.txt")
    target = read_lines(txt / f"ACL.6060.{split}.en-xx.{tgt}.txt") if tgt else english
    if len(target) != len(english):
        raise CorpusError(f"ACL 60/60 {split}: {len(english)} English lines but {len(target)} {tgt} lines in {txt}")
    talk_of = talks(directory / "text" / "xml" / f"ACL.6060.{split}.en-xx.en.xml")
    if set(talk_of) != set(range(1, len(english) + 1)):
        raise CorpusError(f"ACL 60/60 {split}: the XML's segment ids do not match the {len(english)} text lines")
    lang, task, tag = (tgt, "translate", f"en_{tgt}") if tgt else ("en", "transcribe", "en")
    gold = directory / "segmented_wavs" / "gold"
    utts, dropped = [], Counter()
    for n, (src_text, tgt_text) in enumerate(zip(english, target), 1):
        if not tgt_text or not src_text:
            dropped["empty line"] += 1
            continue
        speaker = f"acl6060_{tag}-{talk_of[n]}"
        utts.append(Utt(f"{speaker}-sent_{n:04d}", speaker, str(gold / f"sent_{n}.wav"), tgt_text, lang, task,
                        transcript=src_text))
    return utts, dropped


def plans(path: str | None, targets=("de", "zh"), **_options) -> list[Plan]:
    src = source(path)
    out = []
    for split in SPLITS:
        directory = split_dir(src, split)
        if directory is None:
            if split == "dev":
                raise src.error("no 2/acl_6060/dev/segmented_wavs/gold/ (nor acl_6060/dev/..., dev/...)")
            continue
        for tgt in (None, *targets):
            tag = f"en_{tgt}" if tgt else "en"
            fp = fingerprint("acl6060", VERSION, directory, split=split, target=tgt)
            out.append(Plan(f"acl6060_{tag}_{split}", fp,
                            lambda d=directory, s=split, t=tgt: read_split(d, s, t)))
    return out
