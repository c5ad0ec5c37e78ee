"""FLEURS (google/fleurs on the HF hub) → transcription data dirs per language, and en→xx translation data dirs.

Layout of the HF dataset repository (``data/<config>/``; its loading script reads these files — the tsv has no
header and seven tab-separated fields: id, file name, raw transcription, normalised transcription, words/phonemes,
number of samples, gender; the audio archives hold ``<split>/<file name>``, 16 kHz wav):

    $FLEURS/data/<config>/{train,dev,test}.tsv          config: en_us, de_de, it_it, cmn_hans_cn
    $FLEURS/data/<config>/audio/{train,dev,test}.tar.gz (or already extracted: audio/<split>/<file name>)

``$FLEURS`` may also point at the ``data/`` folder itself. Archives are extracted once (wav files only, written
under their base name) to ``<work_dir>/fleurs/<config>/<split>/``, atomically.
Data dirs: ``fleurs_<lang>_{train,dev,test}`` (transcribe, target = the raw transcription with case and
punctuation) and, FLEURS being n-way parallel (one sentence id, one FLoRes sentence, in every language),
``fleurs_en_<tgt>_{train,dev,test}`` (translate: English audio, target = the raw transcription of the same
sentence id in <tgt>; English rows whose id the target language lacks are dropped and counted).
FLEURS has no speaker ids: each recording is its own speaker "fleurs_<lang>-<file stem>", utterance
"<speaker>-<sentence id>".
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

from espnet_speechlm_plugin.corpora.common import (
    CorpusError, Plan, Source, Utt, fingerprint, log, normalize_text, read_tsv,
)
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES

VERSION = 1
LAYOUT = """
data/<config>/{train,dev,test}.tsv           (no header: id, file name, raw transcription, transcription, ...)
data/<config>/audio/{train,dev,test}.tar.gz  (or extracted: data/<config>/audio/<split>/<file name>.wav)
    config: en_us, de_de, it_it, cmn_hans_cn
"""
CONFIGS = {"en": "en_us", "de": "de_de", "it": "it_it", "zh": "cmn_hans_cn"}
SPLITS = ("train", "dev", "test")
N_FIELDS = 7


def source(path: str | None) -> Source:
    return Source("FLEURS", path, "fleurs", LAYOUT)


def config_dir(src: Source, lang: str) -> Path:
    config = CONFIGS[lang]
    root = src.root()
    for cand in (root / "data" / config, root / config):
        if cand.is_dir():
            return cand
    raise src.error(f"directory data/{config} not found (language {lang})")


def read_rows(tsv: Path) -> list[tuple[int, list[str]]]:
    rows = read_tsv(tsv, header=False)
    for lineno, fields in rows:
        if len(fields) != N_FIELDS:
            raise CorpusError(f"{tsv} line {lineno}: {len(fields)} tab-separated fields, FLEURS has {N_FIELDS} "
                              "(id, file name, raw transcription, transcription, words, num samples, gender)")
    return rows


def audio_dir(cfg: Path, split: str, work_dir: Path) -> Path:
    """The folder holding the split's wavs: extracted next to the tsv, or extracted by us from the archive."""
    extracted = cfg / "audio" / split
    if extracted.is_dir():
        return extracted
    archive = cfg / "audio" / f"{split}.tar.gz"
    if not archive.is_file():
        raise CorpusError(f"FLEURS: neither {extracted}/ nor {archive} exists; download audio/{split}.tar.gz of "
                          f"google/fleurs {cfg.name} (FLEURS variable in db.sh)")
    target = work_dir / "fleurs" / cfg.name / split
    if target.is_dir():  # renamed into place only when complete
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}.tmp-", dir=target.parent))
    log(f"extracting {archive} → {target}")
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".wav"):
                    continue
                # base name only: archive paths never escape the target folder
                with tar.extractfile(member) as src_f, open(tmp / os.path.basename(member.name), "wb") as out_f:
                    shutil.copyfileobj(src_f, out_f)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def read_transcribe(src: Source, lang: str, split: str, work_dir: Path) -> tuple[list[Utt], Counter]:
    cfg = config_dir(src, lang)
    audio = audio_dir(cfg, split, work_dir)
    utts, dropped = [], Counter()
    for _, fields in read_rows(cfg / f"{split}.tsv"):
        sent_id, file_name, raw = fields[0], fields[1], normalize_text(fields[2])
        if not raw:
            dropped["empty transcription"] += 1
            continue
        speaker = f"fleurs_{lang}-{Path(file_name).stem}"
        utts.append(Utt(f"{speaker}-{sent_id}", speaker, str(audio / file_name), raw, lang, "transcribe",
                        transcript=raw))
    return utts, dropped


def read_translate(src: Source, tgt: str, split: str, work_dir: Path) -> tuple[list[Utt], Counter]:
    tgt_cfg = config_dir(src, tgt)
    targets: dict[str, str] = {}
    for s in SPLITS:  # a sentence id is one FLoRes sentence whatever the split
        if (tgt_cfg / f"{s}.tsv").is_file():
            for _, fields in read_rows(tgt_cfg / f"{s}.tsv"):
                targets.setdefault(fields[0], normalize_text(fields[2]))
    en_utts, dropped = read_transcribe(src, "en", split, work_dir)
    utts = []
    for u in en_utts:
        sent_id = u.utt_id.rsplit("-", 1)[1]
        translation = targets.get(sent_id)
        if not translation:
            dropped[f"sentence id missing in {CONFIGS[tgt]}"] += 1
            continue
        speaker = u.speaker.replace("fleurs_en-", f"fleurs_en_{tgt}-", 1)
        utts.append(Utt(f"{speaker}-{sent_id}", speaker, u.audio, translation, tgt, "translate",
                        transcript=u.text))
    return utts, dropped


def plans(path: str | None, work_dir: str, langs=DEFAULT_LANGUAGES, translate: bool = True,
          **_options) -> list[Plan]:
    src = source(path)
    work = Path(work_dir).resolve()
    out = []
    for lang in langs:
        if lang not in CONFIGS:
            raise CorpusError(f"FLEURS: no config for language {lang!r}; known: {', '.join(CONFIGS)}")
        cfg = config_dir(src, lang)
        for split in SPLITS:
            if not (cfg / f"{split}.tsv").is_file():
                continue
            fp = fingerprint("fleurs", VERSION, cfg, split=split, task="transcribe")
            out.append(Plan(f"fleurs_{lang}_{split}", fp,
                            lambda lang=lang, split=split: read_transcribe(src, lang, split, work)))
    if translate and "en" in langs:
        en_cfg = config_dir(src, "en")
        for tgt in (lang for lang in langs if lang != "en"):
            for split in SPLITS:
                if not (en_cfg / f"{split}.tsv").is_file():
                    continue
                fp = fingerprint("fleurs", VERSION, src.root(), split=split, task="translate", target=CONFIGS[tgt])
                out.append(Plan(f"fleurs_en_{tgt}_{split}", fp,
                                lambda tgt=tgt, split=split: read_translate(src, tgt, split, work)))
    return out
