"""Mozilla Common Voice (en, de, it, zh-CN) → transcription data dirs.

Layout as distributed (``cv-corpus-<version>/<locale>/``; the columns follow the release's tsv header, e.g.
client_id, path, sentence_id, sentence, sentence_domain, up_votes, down_votes, age, gender, accents, variant,
locale, segment in recent releases; only client_id, path and sentence are used):

    $COMMONVOICE/<locale>/validated.tsv, train.tsv, dev.tsv, test.tsv    tab-separated with a header line
    $COMMONVOICE/<locale>/clips/<path>                                   MP3, 48 kHz (older releases: some 32 kHz)

Data dirs: ``cv_<lang>_{train,dev,test}`` for lang in en, de, it, zh (locale zh-CN); task transcribe.
``train`` is by default every validated clip that is not in dev.tsv or test.tsv (``--cv_train validated``: the
official train.tsv keeps one clip per sentence and is much smaller); ``--cv_train train`` uses train.tsv.
Sentences are kept as written (case and punctuation). Speaker "cv_<lang>-<first 16 hex of client_id>", then the
clip name without extension (unique within a locale).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from espnet_speechlm_plugin.corpora.common import (
    CorpusError, Plan, Source, Utt, fingerprint, normalize_text, read_tsv, require_columns,
)
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES

VERSION = 1
LAYOUT = """
<locale>/validated.tsv, train.tsv, dev.tsv, test.tsv   (client_id, path, sentence, ...; locale en, de, it, zh-CN)
<locale>/clips/<path>.mp3
"""
LOCALES = {"en": "en", "de": "de", "it": "it", "zh": "zh-CN"}
SPEAKER_CHARS = 16


def source(path: str | None) -> Source:
    return Source("COMMONVOICE", path, "cv", LAYOUT)


def read_clips(tsv: Path) -> list[dict]:
    """Rows of a Common Voice tsv with their line number under "_line"."""
    rows = read_tsv(tsv)
    require_columns(tsv, rows, ("client_id", "path", "sentence"))
    return [dict(row, _line=lineno) for lineno, row in rows]


def clip_path(clips: Path, name: str) -> Path:
    path = clips / name
    if not path.suffix and not path.exists() and (clips / f"{name}.mp3").exists():
        return clips / f"{name}.mp3"  # early releases list clips without the extension
    return path


def clip_utt(row: dict, clips: Path, prefix: str, text: str, lang: str, task: str, transcript: str) -> Utt:
    client = row["client_id"].strip()
    if not client or not client.isalnum():
        raise CorpusError(f"line {row['_line']}: client_id {client!r} is not a hex id")
    speaker = f"{prefix}-{client[:SPEAKER_CHARS]}"
    stem = Path(row["path"]).name.removesuffix(".mp3")
    return Utt(f"{speaker}-{stem}", speaker, str(clip_path(clips, row["path"])), text, lang, task,
               transcript=transcript)


def read_split(locale_dir: Path, split: str, lang: str, train_from: str) -> tuple[list[Utt], Counter]:
    dropped: Counter = Counter()
    if split == "train" and train_from == "validated":
        held_out = {row["path"] for name in ("dev.tsv", "test.tsv") if (locale_dir / name).is_file()
                    for row in read_clips(locale_dir / name)}
        rows = [r for r in read_clips(locale_dir / "validated.tsv") if r["path"] not in held_out]
    else:
        rows = read_clips(locale_dir / f"{split}.tsv")
    utts = []
    seen: set[str] = set()
    for row in rows:
        text = normalize_text(row["sentence"])
        if not text:
            dropped["empty sentence"] += 1
            continue
        if row["path"] in seen:  # a clip listed twice in one tsv
            dropped["duplicate clip"] += 1
            continue
        seen.add(row["path"])
        try:
            utts.append(clip_utt(row, locale_dir / "clips", f"cv_{lang}", text, lang, "transcribe", text))
        except CorpusError as err:
            raise CorpusError(f"{locale_dir}/{split}.tsv {err}") from None
    return utts, dropped


def plans(path: str | None, langs=DEFAULT_LANGUAGES, train_from: str = "validated", **_options) -> list[Plan]:
    if train_from not in ("validated", "train"):
        raise CorpusError(f"--cv_train must be 'validated' or 'train', got {train_from!r}")
    src = source(path)
    out = []
    for lang in langs:
        if lang not in LOCALES:
            raise CorpusError(f"Common Voice: no locale for language {lang!r}; known: {', '.join(LOCALES)}")
        locale = LOCALES[lang]
        locale_dir = src.need(locale, kind="dir")
        src.need(f"{locale}/clips", kind="dir")
        for split in ("train", "dev", "test"):
            tsv = "validated.tsv" if split == "train" and train_from == "validated" else f"{split}.tsv"
            src.need(f"{locale}/{tsv}")
            options = {"locale": locale, "split": split, "train_from": train_from if split == "train" else None}
            out.append(Plan(f"cv_{lang}_{split}", fingerprint("common_voice", VERSION, locale_dir, **options),
                            lambda d=locale_dir, s=split, lang=lang: read_split(d, s, lang, train_from)))
    return out
