"""Write small fixture corpora, a few utterances each, in the on-disk layouts the IWSLT recipe's readers expect.

    python -m espnet_speechlm_plugin.bin.make_fixture_corpora OUT_DIR [--corpora "librispeech mls cv ..."]

Where it sits: tests and dry runs of egs2/iwslt25_if/s2t1 stage 1 (``local/data.sh --corpora_root OUT_DIR``),
without downloading terabytes. The speech is synthesised with espeak-ng (``synth/espeak.py``); the folder
names are those the real releases unpack to (what ``--corpora_root`` looks for), the audio formats and rates
those of the releases:

    OUT_DIR/LibriSpeech/{train-clean-100,dev-clean,test-clean,test-other}/<spk>/<chapter>/*.flac + *.trans.txt
                                                                                              FLAC 16 kHz
    OUT_DIR/mls_german_opus/ (the opus release), mls_italian/ (the flac release)
            {train,dev,test}/{transcripts.txt,segments.txt,audio/<spk>/<book>/*.{opus,flac}}   16 kHz
    OUT_DIR/cv-corpus-17.0-2024-03-15/{en,de,it,zh-CN}/{validated,train,dev,test}.tsv + clips/*.mp3   MP3 48 kHz
    OUT_DIR/covost2/covost_v2.en_de.tsv (raw: path, sentence, translation, split)
            covost2/covost_v2.en_zh-CN.{train,dev,test}.tsv (get_covost_splits.py output)   over Common Voice en
    OUT_DIR/fleurs/data/{en_us,de_de,it_it,cmn_hans_cn}/{train,dev,test}.tsv + audio/<split>.tar.gz    wav 16 kHz
    OUT_DIR/Spoken-SQuAD/spoken_{train,test}-v1.1.json + Spoken-SQuAD_audio/{train,dev}_wav/<t>_<p>_<s>.wav  24 kHz
    OUT_DIR/2/acl_6060/dev/{segmented_wavs/gold/sent_N.wav, full_wavs/<talk>.wav,      (2023.iwslt-1.2.dataset.zip
            text/txt/ACL.6060.dev.en-xx.{en,de,zh}.txt, text/xml/...xml, FILE_ORDER}    unzipped here) wav 16 kHz

Deliberate irregularities the readers must handle: a CoVoST row whose clip is not in validated.tsv, a FLEURS
English sentence id missing in Chinese, quotes in CoVoST text (backslash-escaped), multi-sentence Spoken-SQuAD
passages. And evaluation clips in training data, as in the real corpora: CoVoST 2's dev and test clips are
Common Voice training clips (CoVoST 2 fixed its splits on release 4; later releases split anew), and one CoVoST
test sentence was recorded twice by its speaker, the second clip only in Common Voice (stage 2's make_mix must
remove all three from training). Each corpus folder is built in a temporary folder and renamed, so one that
exists is complete and is left alone (``--overwrite`` rebuilds). Deterministic: the same command gives the same
text and audio.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

CV_RELEASE = "cv-corpus-17.0-2024-03-15"
CORPORA = {  # --corpora name -> folders written under OUT_DIR (as the releases unpack)
    "librispeech": ("LibriSpeech",),
    "mls": ("mls_german_opus", "mls_italian"),
    "cv": (CV_RELEASE,),
    "covost2": ("covost2",),
    "fleurs": ("fleurs",),
    "spokensquad": ("Spoken-SQuAD",),
    "acl6060": ("2",),
}
VOICES = {"en": "en-us", "de": "de", "it": "it", "zh": "cmn"}

# Parallel sentences (en, de, it, zh): FLEURS ids, CoVoST and ACL 60/60 translations come from the same row.
PARALLEL = [
    ("The cat sleeps on the warm floor.", "Die Katze schläft auf dem warmen Boden.",
     "Il gatto dorme sul pavimento caldo.", "猫在温暖的地板上睡觉。"),
    ("We open the window every morning.", "Wir öffnen jeden Morgen das Fenster.",
     "Apriamo la finestra ogni mattina.", "我们每天早上打开窗户。"),
    ("The train leaves at seven.", "Der Zug fährt um sieben ab.", "Il treno parte alle sette.", "火车七点出发。"),
    ("My brother reads a long book.", "Mein Bruder liest ein langes Buch.", "Mio fratello legge un libro lungo.",
     "我哥哥在读一本很长的书。"),
    ("The children play in the garden.", "Die Kinder spielen im Garten.", "I bambini giocano in giardino.",
     "孩子们在花园里玩。"),
    ("She drinks tea with milk.", "Sie trinkt Tee mit Milch.", "Lei beve il tè con il latte.", "她喝加牛奶的茶。"),
    ("This model translates speech.", "Dieses Modell übersetzt Sprache.", "Questo modello traduce il parlato.",
     "这个模型翻译语音。"),
    ("We thank the reviewers for their comments.", "Wir danken den Gutachtern für ihre Kommentare.",
     "Ringraziamo i revisori per i loro commenti.", "我们感谢审稿人的意见。"),
]
LANG_COLUMN = {"en": 0, "de": 1, "it": 2, "zh": 3}


def sentence(row: int, lang: str) -> str:
    return PARALLEL[row % len(PARALLEL)][LANG_COLUMN[lang]]


def plain(text: str) -> str:
    """LibriSpeech/MLS style: no punctuation."""
    return " ".join("".join(c for c in text if c.isalnum() or c in " '").split())


class Synth:
    """espeak-ng speech, cached per (text, voice), resampled to the corpus's rate."""

    def __init__(self):
        from espnet_speechlm_plugin.synth import espeak

        self.espeak = espeak
        self.cache: dict[tuple[str, str, str], np.ndarray] = {}

    def __call__(self, text: str, lang: str, variant: str = "", rate: int = 16000) -> np.ndarray:
        key = (text, lang, variant)
        if key not in self.cache:
            self.cache[key] = self.espeak.synthesize(text, self.espeak.Voice(VOICES[lang], variant, 175, 50))
        audio = self.cache[key]
        if rate != self.espeak.SAMPLE_RATE:
            audio = soxr.resample(audio, self.espeak.SAMPLE_RATE, rate).astype(np.float32)
        return np.clip(audio, -1.0, 32767 / 32768)


def write_audio(path: Path, audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, format=fmt, subtype=subtype)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]], escape: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n",
                            escapechar="\\" if escape else None, quotechar='"' if escape else None)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def hexid(*parts) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------

def make_librispeech(out: Path, synth: Synth) -> None:
    root = out / "LibriSpeech"
    plan = {"train-clean-100": [(103, 1240, "m1", [0, 1]), (1034, 121119, "f1", [2, 3])],
            "dev-clean": [(84, 121123, "m3", [4, 5])], "test-clean": [(1089, 134686, "f3", [6])],
            "test-other": [(1688, 142285, "m2", [7])]}
    for subset, chapters in plan.items():
        for spk, chapter, variant, rows in chapters:
            folder = root / subset / str(spk) / str(chapter)
            lines = []
            for i, row in enumerate(rows):
                utt = f"{spk}-{chapter}-{i:04d}"
                write_audio(folder / f"{utt}.flac", synth(sentence(row, "en"), "en", variant), 16000, "FLAC", "PCM_16")
                lines.append(f"{utt} {plain(sentence(row, 'en')).upper()}\n")
            write_text(folder / f"{spk}-{chapter}.trans.txt", "".join(lines))


def make_mls(out: Path, synth: Synth) -> None:
    # German as the opus release (mls_german_opus.tar.gz), Italian as the flac one: the reader takes both
    for lang, folder, ext, fmt, subtype in (("de", "mls_german_opus", "opus", "OGG", "OPUS"),
                                            ("it", "mls_italian", "flac", "FLAC", "PCM_16")):
        for split, items in {"train": [(1844, 931, "m1", 0), (1844, 931, "m1", 1), (2422, 1720, "f1", 2)],
                             "dev": [(3037, 2614, "m3", 3)], "test": [(4536, 3915, "f3", 4)]}.items():
            transcripts, segments = [], []
            for k, (spk, book, variant, row) in enumerate(items):
                utt = f"{spk}_{book}_{k:06d}"
                audio = synth(sentence(row, lang), lang, variant)
                write_audio(out / folder / split / "audio" / str(spk) / str(book) / f"{utt}.{ext}", audio, 16000,
                            fmt, subtype)
                transcripts.append([utt, plain(sentence(row, lang)).lower()])
                segments.append([utt, f"http://www.archive.org/download/book{book}/chapter_{k:02d}.mp3",
                                 f"{10.0 * k:.2f}", f"{10.0 * k + len(audio) / 16000:.2f}"])
            write_tsv(out / folder / split / "transcripts.txt", None, transcripts)
            write_tsv(out / folder / split / "segments.txt", None, segments)


CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
             "gender", "accents", "variant", "locale", "segment"]
# en clips: (clip number, speaker index, parallel row, CV split ("" = validated.tsv only), CoVoST split ("" = none))
CV_EN = [(101, 0, 0, "train", "train"), (102, 0, 1, "train", "train"), (103, 1, 2, "train", "train_covost"),
         (104, 2, 3, "train", "dev"), (105, 3, 4, "", "test"), (106, 1, 5, "", "train"),
         (107, 3, 4, "train", ""),  # the CoVoST test sentence again, by the same speaker: another file
         (108, 4, 6, "dev", ""), (109, 5, 7, "test", "")]
CV_VARIANTS = ["m1", "f1", "m3", "f3", "m2", "f2"]


def cv_sentence(row: int, lang: str) -> str:
    """Common Voice / CoVoST text: one sentence has quotes (CoVoST's tsv escapes them with a backslash)."""
    text = sentence(row, lang)
    if row == 3 and lang in ("en", "de"):
        text = text.replace("book", 'book, "Ulysses"') if lang == "en" else text.replace("Buch", 'Buch, „Ulysses"')
    return text


def make_cv(out: Path, synth: Synth) -> None:
    root = out / CV_RELEASE
    for lang, locale in (("en", "en"), ("de", "de"), ("it", "it"), ("zh", "zh-CN")):
        clips = CV_EN if lang == "en" else [(201, 0, 5, "train", ""), (202, 1, 6, "train", ""),
                                             (203, 2, 7, "dev", ""), (204, 3, 0, "test", "")]
        rows: dict[str, list[list[str]]] = {"validated": [], "train": [], "dev": [], "test": []}
        for number, spk, row, split, _ in clips:
            name = f"common_voice_{locale}_{number}.mp3"
            text = cv_sentence(row, lang)
            # a CV clip is 48 kHz MP3; the speaker id is a 128-hex-digit hash
            write_audio(root / locale / "clips" / name, synth(text, lang, CV_VARIANTS[spk], 48000),
                        48000, "MP3", "MPEG_LAYER_III")
            record = [hexid("cv", locale, spk) + hexid("cv2", locale, spk), name, hexid("s", text)[:64], text, "",
                      "2", "0", "", "", "", "", locale, ""]
            rows["validated"].append(record)
            if split:
                rows[split].append(record)
        for name, table in rows.items():
            write_tsv(root / locale / f"{name}.tsv", CV_HEADER, table)


def make_covost2(out: Path, synth: Synth) -> None:
    root = out / "covost2"
    cv_validated = {c[0]: c for c in CV_EN}
    raw = []
    for number, _, row, _, covost_split in CV_EN:
        if covost_split:
            en, de = cv_sentence(row, "en"), cv_sentence(row, "de")
            raw.append([f"common_voice_en_{number}.mp3", en, de, covost_split])
    # a translated clip that this Common Voice release does not list in validated.tsv: dropped and counted
    raw.append(["common_voice_en_999.mp3", "A missing clip.", "Ein fehlender Clip.", "train"])
    write_tsv(root / "covost_v2.en_de.tsv", ["path", "sentence", "translation", "split"], raw, escape=True)
    for split in ("train", "dev", "test"):
        names = {"train": ("train", "train_covost")}.get(split, (split,))
        rows = []
        for number, spk, row, _, covost_split in CV_EN:
            if covost_split in names and number in cv_validated:
                rows.append([f"common_voice_en_{number}.mp3", cv_sentence(row, "en"), sentence(row, "zh"),
                             hexid("cv", "en", spk) + hexid("cv2", "en", spk)])
        write_tsv(root / f"covost_v2.en_zh-CN.{split}.tsv", ["path", "sentence", "translation", "client_id"], rows,
                  escape=True)


FLEURS_CONFIGS = {"en": "en_us", "de": "de_de", "it": "it_it", "zh": "cmn_hans_cn"}
FLEURS_SPLITS = {"train": [1, 2], "dev": [3], "test": [4]}  # sentence ids (= parallel rows)


def make_fleurs(out: Path, synth: Synth) -> None:
    for lang, config in FLEURS_CONFIGS.items():
        folder = out / "fleurs" / "data" / config
        for split, ids in FLEURS_SPLITS.items():
            if lang == "zh":
                ids = [i for i in ids if i != 2]  # an English sentence Chinese lacks: dropped in fleurs_en_zh_*
            rows, members = [], []
            for k, sid in enumerate(ids):
                for variant in ("m1", "f1") if split == "train" else ("m3",):
                    text = sentence(sid, lang)
                    audio = synth(text, lang, variant)
                    file_name = f"{int(hexid('fleurs', lang, sid, variant)[:15], 16)}.wav"
                    buf = io.BytesIO()
                    sf.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
                    members.append((f"{split}/{file_name}", buf.getvalue()))
                    gender = "MALE" if variant.startswith("m") else "FEMALE"
                    rows.append([str(sid), file_name, text, plain(text).lower(), "|".join(plain(text).split()),
                                 str(len(audio)), gender])
            write_tsv(folder / f"{split}.tsv", None, rows)
            (folder / "audio").mkdir(parents=True, exist_ok=True)
            with tarfile.open(folder / "audio" / f"{split}.tar.gz", "w:gz") as tar:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))


# Spoken-SQuAD: per split, articles -> paragraphs -> (sentences, [(question, answer)]); the reader holds two of
# the four training articles out as the dev set
SQUAD = {
    "train": [
        [(["the cat sleeps on the warm floor", "the children play in the garden"],
          [("Where does the cat sleep?", "on the warm floor"), ("Who plays in the garden?", "the children")]),
         (["the train leaves at seven"], [("When does the train leave?", "at seven")])],
        [(["my brother reads a long book", "she drinks tea with milk"],
          [("What does she drink?", "tea with milk")])],
        [(["we thank the reviewers for their comments"], [("Whom do we thank?", "the reviewers")])],
        [(["the children play in the garden", "the train leaves at seven"],
          [("Where do the children play?", "in the garden"), ("When does it leave?", "at seven")])],
    ],
    "test": [
        [(["we open the window every morning"], [("When do we open the window?", "every morning"),
                                                  ("What do we open?", "the window")])],
        [(["this model translates speech", "we thank the reviewers"], [("What does the model translate?",
                                                                         "speech")])],
    ],
}


def make_spoken_squad(out: Path, synth: Synth) -> None:
    root = out / "Spoken-SQuAD"
    for split, articles in SQUAD.items():
        wav_dir = root / "Spoken-SQuAD_audio" / ("train_wav" if split == "train" else "dev_wav")
        data = []
        for t, paragraphs in enumerate(articles):
            paras = []
            for p, (sentences, qas) in enumerate(paragraphs):
                for s, text in enumerate(sentences):  # Google TTS wavs are 24 kHz
                    write_audio(wav_dir / f"{t}_{p}_{s}.wav", synth(text, "en", "", 24000), 24000, "WAV", "PCM_16")
                context = " ".join(sentences)
                paras.append({"context": context, "qas": [
                    {"question": q, "id": hexid("squad", split, t, p, q)[:24],
                     "answers": [{"answer_start": context.index(a), "text": a}]} for q, a in qas]})
            data.append({"title": f"Article_{split}_{t}", "paragraphs": paras})
        write_text(root / f"spoken_{split}-v1.1.json", json.dumps({"data": data, "version": "1.1"}))


ACL_TALKS = [("2022.acl-long.110", [6, 7]), ("2022.acl-long.117", [2, 0])]  # talk -> parallel rows of its sentences


def make_acl6060(out: Path, synth: Synth) -> None:
    root = out / "2" / "acl_6060" / "dev"  # as `unzip 2023.iwslt-1.2.dataset.zip` in OUT_DIR leaves it
    texts: dict[str, list[str]] = {lang: [] for lang in ("en", "de", "zh")}
    xml_docs: dict[str, list[str]] = {lang: [] for lang in texts}
    n = 0
    for talk, rows in ACL_TALKS:
        full = []
        segs: dict[str, list[str]] = {lang: [] for lang in texts}
        for row in rows:
            n += 1
            audio = synth(sentence(row, "en"), "en", "m3")
            write_audio(root / "segmented_wavs" / "gold" / f"sent_{n}.wav", audio, 16000, "WAV", "PCM_16")
            full += [np.zeros(8000, np.float32), audio]
            for lang in texts:
                texts[lang].append(sentence(row, lang))
                segs[lang].append(f'<seg id="{n}">{sentence(row, lang)}</seg>')
        write_audio(root / "full_wavs" / f"{talk}.wav", np.concatenate(full), 16000, "WAV", "PCM_16")
        for lang in texts:
            xml_docs[lang].append(f'<doc docid="{talk}" genre="presentations">\n' + "\n".join(segs[lang]) + "\n</doc>")
    for lang in texts:
        write_text(root / "text" / "txt" / f"ACL.6060.dev.en-xx.{lang}.txt", "".join(t + "\n" for t in texts[lang]))
        write_text(root / "text" / "xml" / f"ACL.6060.dev.en-xx.{lang}.xml",
                   f'<?xml version="1.0" encoding="UTF-8"?>\n<mteval>\n<refset setid="acl6060.dev" srclang="en" '
                   f'trglang="{lang}">\n' + "\n".join(xml_docs[lang]) + "\n</refset>\n</mteval>\n")
    write_text(root / "FILE_ORDER", "".join(f"{talk}\n" for talk, _ in ACL_TALKS))


MAKERS = {"librispeech": make_librispeech, "mls": make_mls, "cv": make_cv, "covost2": make_covost2,
          "fleurs": make_fleurs, "spokensquad": make_spoken_squad, "acl6060": make_acl6060}


def make_fixture_corpora(out_dir: str | Path, corpora=tuple(CORPORA), overwrite: bool = False) -> list[str]:
    """Write the fixture corpora; returns the folders written (existing complete ones are kept)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    written = []
    for corpus in corpora:
        if corpus not in MAKERS:
            raise SystemExit(f"unknown corpus {corpus!r}; choose from {' '.join(CORPORA)}")
        folders = CORPORA[corpus]
        if not overwrite and all((out / f).is_dir() for f in folders):
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{corpus}.tmp-", dir=out))
        try:
            MAKERS[corpus](tmp, synth)
            for folder in folders:
                if (out / folder).exists():
                    shutil.rmtree(out / folder)
                os.replace(tmp / folder, out / folder)
                written.append(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return written


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="where the corpus folders go (then: local/data.sh --corpora_root OUT_DIR)")
    p.add_argument("--corpora", default=" ".join(CORPORA), help=f"which ones (default: all of {' '.join(CORPORA)})")
    p.add_argument("--overwrite", action="store_true", help="rebuild corpus folders that exist")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    written = make_fixture_corpora(args.out_dir, args.corpora.split(), args.overwrite)
    print(f"make_fixture_corpora: {args.out_dir}: wrote {', '.join(written) or 'nothing (all present)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
