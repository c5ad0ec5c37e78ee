"""CoVoST 2 (en→de, en→zh) → speech translation data dirs over Common Voice English clips.

Layout as distributed (facebookresearch/covost README and its ``get_covost_splits.py``; the HF ``covost2`` loader
reads the same files): ``covost_v2.en_<tgt>.tsv.tar.gz`` from dl.fbaipublicfiles.com/covost unpacks to
``covost_v2.en_<tgt>.tsv`` with columns path, sentence, translation, split (split: train, train_covost, dev, test;
written by pandas with a backslash escape character). ``get_covost_splits.py`` joins it with Common Voice's
``validated.tsv`` (English, release 4 for CoVoST 2) into ``covost_v2.en_<tgt>.{train,dev,test}.tsv`` with columns
path, sentence, translation, client_id. Either form is read; the split files win when both are present.

    $COVOST2/covost_v2.en_de.tsv, covost_v2.en_zh-CN.tsv                   (or the .train/.dev/.test.tsv splits)
    $COVOST2_CV_EN/validated.tsv, $COVOST2_CV_EN/clips/<path>.mp3         Common Voice English (default
                                                                          $COMMONVOICE/en)

With the raw tsv, rows whose clip is not in validated.tsv are dropped and counted (as the official join does).
Data dirs: ``covost2_en_de_{train,dev,test}``, ``covost2_en_zh_{train,dev,test}``; task translate, prompt language
= the target; ``transcript`` = the English sentence. Speakers and utterance ids as in ``cv_en_*`` but prefixed
"covost2_en_<tgt>" so that every id is unique across data dirs (the audio is shared: stage 2 featurises a file once).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from espnet_speechlm_plugin.corpora.common import (
    CorpusError, Plan, Source, Utt, fingerprint, normalize_text, read_tsv, require_columns,
)
from espnet_speechlm_plugin.corpora.common_voice import clip_utt, read_clips

VERSION = 1
LAYOUT = """
covost_v2.en_<tgt>.tsv     (path, sentence, translation, split; tgt de, zh-CN; from covost_v2.en_<tgt>.tsv.tar.gz)
  or covost_v2.en_<tgt>.{train,dev,test}.tsv   (columns path, sentence, translation, client_id; get_covost_splits.py)
"""
CV_LAYOUT = """
validated.tsv        (Common Voice English: client_id, path, sentence, ...)
clips/<path>.mp3
"""
TARGETS = {"de": "de", "zh": "zh-CN"}
SPLITS = ("train", "dev", "test")
RAW_SPLITS = {"train": ("train", "train_covost"), "dev": ("dev",), "test": ("test",)}


def source(path: str | None) -> Source:
    return Source("COVOST2", path, "covost2", LAYOUT)


def cv_source(path: str | None) -> Source:
    return Source("COVOST2_CV_EN", path, "covost2", CV_LAYOUT)


def _tsv_rows(path: Path, needed) -> list[dict]:
    rows = read_tsv(path, escapechar="\\")
    require_columns(path, rows, needed)
    return [dict(row, _line=lineno) for lineno, row in rows]


def tsv_files(src: Source, tgt: str) -> tuple[str, dict[str, Path]]:
    """("splits", {split: tsv}) or ("raw", {"all": tsv}); a CorpusError naming COVOST2 if neither exists."""
    root = src.root()
    code = TARGETS[tgt]
    split_files = {s: root / f"covost_v2.en_{code}.{s}.tsv" for s in SPLITS}
    if all(p.is_file() for p in split_files.values()):
        return "splits", split_files
    return "raw", {"all": src.need(f"covost_v2.en_{code}.tsv")}


def read_pair(src: Source, cv: Source, tgt: str) -> dict[str, tuple[list[Utt], Counter]]:
    """All three splits of one pair (the raw tsv holds them together)."""
    kind, files = tsv_files(src, tgt)
    clips = cv.need("clips", kind="dir")
    prefix = f"covost2_en_{tgt}"
    out: dict[str, tuple[list[Utt], Counter]] = {s: ([], Counter()) for s in SPLITS}
    if kind == "splits":
        by_split = {s: _tsv_rows(f, ("path", "sentence", "translation", "client_id")) for s, f in files.items()}
    else:
        raw = _tsv_rows(files["all"], ("path", "translation", "split"))
        validated = {row["path"]: row for row in read_clips(cv.need("validated.tsv"))}
        by_split = {s: [] for s in SPLITS}
        split_of = {name: s for s, names in RAW_SPLITS.items() for name in names}
        for row in raw:
            split = split_of.get(row["split"])
            if split is None:
                raise CorpusError(f"{files['all']} line {row['_line']}: unknown split {row['split']!r}; expected "
                                  f"one of {', '.join(split_of)}")
            cv_row = validated.get(row["path"])
            if cv_row is None:
                out[split][1]["clip not in Common Voice validated.tsv"] += 1
                continue
            # sentence and client_id from validated.tsv, as get_covost_splits.py merges them
            by_split[split].append({**cv_row, "translation": row["translation"], "_line": row["_line"]})
    for split, rows in by_split.items():
        utts, dropped = out[split]
        seen: set[str] = set()
        for row in rows:
            translation, sentence = normalize_text(row["translation"]), normalize_text(row["sentence"])
            if not translation or not sentence:
                dropped["empty sentence or translation"] += 1
                continue
            if row["path"] in seen:
                dropped["duplicate clip"] += 1
                continue
            seen.add(row["path"])
            try:
                utts.append(clip_utt(row, clips, prefix, translation, tgt, "translate", sentence))
            except CorpusError as err:
                raise CorpusError(f"{files.get(split, files.get('all'))} {err}") from None
    return out


def plans(path: str | None, cv_en_path: str | None, targets=("de", "zh"), **_options) -> list[Plan]:
    src, cv = source(path), cv_source(cv_en_path)
    src.root()  # the translations first: a missing COVOST2 is the likelier mistake
    cv.need("clips", kind="dir")
    out = []
    for tgt in targets:
        if tgt not in TARGETS:
            raise CorpusError(f"CoVoST 2: no en→{tgt} pair; known targets: {', '.join(TARGETS)}")
        kind, files = tsv_files(src, tgt)
        if kind == "raw":
            cv.need("validated.tsv")
        cache: dict = {}

        def produce(split, tgt=tgt, cache=cache):
            if "pair" not in cache:  # one read of the pair's tsv serves its three data dirs
                cache["pair"] = read_pair(src, cv, tgt)
            return cache["pair"][split]

        for split in SPLITS:
            fp = fingerprint("covost2", VERSION, src.root(), target=TARGETS[tgt], tsv=kind, clips=str(cv.root()))
            out.append(Plan(f"covost2_en_{tgt}_{split}", fp, lambda split=split, produce=produce: produce(split)))
    return out
