"""Spoken-SQuAD → spoken question answering data dirs (English answers), with unanswerable examples.

Layout as distributed (github.com/chiahsuan156/Spoken-SQuAD: the JSON files, spoken_train-v1.1.json and
spoken_test-v1.1.json, are in the repository; the audio is
``Spoken-SQuAD_audio.zip`` (~50 GB) which holds two more zips, ``Spoken-SQuAD_audio/train_wav.zip`` and
``Spoken-SQuAD_audio/dev_wav.zip``; its README: each wav is "TopicIndex_ParagraphIndex_SentenceIndex.wav",
following the structure of the SQuAD json file; the wavs are Google TTS at 24 kHz):

    $SPOKEN_SQUAD/spoken_train-v1.1.json, spoken_test-v1.1.json   SQuAD v1.1 format; contexts are ASR transcripts
    $SPOKEN_SQUAD/Spoken-SQuAD_audio/train_wav/<topic>_<paragraph>_<sentence>.wav   (unzipped train_wav.zip)
    $SPOKEN_SQUAD/Spoken-SQuAD_audio/dev_wav/<topic>_<paragraph>_<sentence>.wav     (unzipped dev_wav.zip; the
                                                                                    audio of spoken_test)

Topic and paragraph indices are taken as positions in the JSON file (``data[topic]["paragraphs"][paragraph]``),
which is what the README describes. A passage's audio is its sentence wavs in sentence order, concatenated once
into ``<work_dir>/spokensquad/<split>/<topic>_<paragraph>.flac`` at the source rate (a one-sentence passage uses
its wav directly); every question on the passage shares that file, so stage 2 featurises it once.

Data dirs: ``spokensquad_en_train`` and ``spokensquad_en_dev`` (spoken_train, split by article: the dev set is
the ``--sqa_dev_fraction`` share of articles, at least ``MIN_DEV_ARTICLES``, whose titles hash lowest (SHA-256), so
the split is the same on every machine and no article, hence no passage, is in both) and ``spokensquad_en_test``
(spoken_test: SQuAD's dev set, the test set Spoken-SQuAD results are reported on); task answer,
prompt ``en answer <question>``, target = the first reference answer as given (the ASR-transcript form, mostly
lower case). ``--sqa_unanswerable_ratio r`` adds round(r × answerable) unanswerable examples: a question paired
with a passage from another article of the same split (seeded, deterministic; a dev question never meets a
train passage), target exactly ``UNANSWERABLE[lang]`` from
``espnet_speechlm_plugin.vocab`` ("Not answerable.", "Nicht zu beantworten.", "Non è possibile
rispondere.", "无法回答。").

Other question languages: Spoken-SQuAD has English questions only. German/Italian/Chinese SQA needs translated
questions and answers, e.g. from the pseudo-labelling stage (MT ensemble + COMETKiwi filter). Given
``--sqa_translations DIR`` holding ``<lang>.tsv`` (header ``id<TAB>question<TAB>answer``; id = the SQuAD question
id), this reader also writes ``spokensquad_<lang>_{train,test}`` with those questions and answers (and the
unanswerable string of that language) over the same English audio; questions without a translation are dropped
and counted. Without such files only English SQA is prepared. The spokensquad_<lang>_{train,dev,test} dirs of
every language hold the same questions and passages.
Speaker = the passage "spokensquad_<lang>-<topic>_<paragraph>"; utterance "<speaker>-<question id>", or
"<speaker>-na-<question id>" for an unanswerable pairing.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from tqdm import tqdm

from espnet_speechlm_plugin.corpora.common import (
    CorpusError, Plan, Source, Utt, fingerprint, log, normalize_text, read_tsv, require_columns,
)

from espnet_speechlm_plugin.vocab import unanswerable

VERSION = 2
LAYOUT = """
spoken_train-v1.1.json, spoken_test-v1.1.json
Spoken-SQuAD_audio/train_wav/<topic>_<paragraph>_<sentence>.wav   (unzip Spoken-SQuAD_audio/train_wav.zip)
Spoken-SQuAD_audio/dev_wav/<topic>_<paragraph>_<sentence>.wav     (unzip Spoken-SQuAD_audio/dev_wav.zip)
"""
SPLITS = {"train": ("spoken_train-v1.1.json", "train_wav"), "test": ("spoken_test-v1.1.json", "dev_wav")}
DEV_FRACTION = 0.02  # of the training articles: ~9 of Spoken-SQuAD's ~440, ~750 questions
MIN_DEV_ARTICLES = 2  # unanswerable pairs need a passage of another article in the same split
_WAV_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)\.wav$")


def source(path: str | None) -> Source:
    return Source("SPOKEN_SQUAD", path, "spokensquad", LAYOUT)


@dataclass(frozen=True)
class Question:
    qid: str
    topic: int
    paragraph: int
    question: str
    answer: str
    context: str
    title: str = ""  # the article's title


def wav_dir(src: Source, split: str) -> Path:
    name = SPLITS[split][1]
    root = src.root()
    for cand in (root / "Spoken-SQuAD_audio" / name, root / name):
        if cand.is_dir():
            return cand
    for archive in (root / "Spoken-SQuAD_audio" / f"{name}.zip", root / f"{name}.zip"):
        if archive.is_file():
            raise src.error(f"{name}/ not extracted", f"Run: unzip {archive} -d {archive.parent}")
    if (root / "Spoken-SQuAD_audio.zip").is_file():
        raise src.error("audio not extracted",
                        f"Run: cd {root} && unzip Spoken-SQuAD_audio.zip && unzip Spoken-SQuAD_audio/{name}.zip "
                        "-d Spoken-SQuAD_audio")
    raise src.error(f"directory Spoken-SQuAD_audio/{name} not found")


def read_questions(path: Path) -> list[Question]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as err:
        raise CorpusError(f"{path}: not a SQuAD-style JSON file with a 'data' list ({err})") from None
    out = []
    for t, article in enumerate(data):
        title = str(article.get("title") or f"article {t}")
        for p, para in enumerate(article.get("paragraphs", [])):
            context = normalize_text(para.get("context", ""))
            for qa in para.get("qas", []):
                answers = [normalize_text(a.get("text", "")) for a in qa.get("answers", [])]
                answers = [a for a in answers if a]
                out.append(Question(str(qa["id"]), t, p, normalize_text(qa.get("question", "")),
                                    answers[0] if answers else "", context, title))
    return out


def dev_topics(questions: list[Question], fraction: float) -> set[int]:
    """The articles (topic indices) held out from spoken_train as the dev set: the ``fraction`` share (at least
    MIN_DEV_ARTICLES, at most half) whose titles hash lowest; none for fraction 0."""
    titles = {q.topic: q.title for q in questions}
    if fraction <= 0 or len(titles) < 2:
        return set()
    n = min(max(MIN_DEV_ARTICLES, round(fraction * len(titles))), len(titles) // 2)
    ranked = sorted(titles, key=lambda t: (hashlib.sha256(titles[t].encode("utf-8")).hexdigest(), t))
    return set(ranked[:n])


def sentence_wavs(directory: Path) -> dict[tuple[int, int], list[Path]]:
    """(topic, paragraph) -> sentence wavs in sentence order, from one listing of the folder."""
    groups: dict[tuple[int, int], list[tuple[int, Path]]] = {}
    with os.scandir(directory) as it:
        for entry in it:
            m = _WAV_NAME.match(entry.name)
            if m:
                groups.setdefault((int(m[1]), int(m[2])), []).append((int(m[3]), Path(entry.path)))
    return {key: [p for _, p in sorted(items)] for key, items in groups.items()}


def _concat(job: tuple[list[Path], Path]) -> str | None:
    """Concatenate sentence wavs into one FLAC (temp name, then rename); an error message or None."""
    parts, out = job
    if out.is_file():
        return None
    chunks, rate = [], None
    for part in parts:
        try:
            audio, sr = soundfile.read(part, dtype="int16", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as err:
            return f"{part}: {err}"
        if rate is not None and sr != rate:
            return f"{part}: {sr} Hz, but the passage's first sentence is {rate} Hz"
        rate = sr
        chunks.append(audio.mean(axis=1).astype(np.int16) if audio.shape[1] > 1 else audio[:, 0])
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    soundfile.write(tmp, np.concatenate(chunks), rate, format="FLAC", subtype="PCM_16")
    os.replace(tmp, out)
    return None


def passage_audio(src: Source, split: str, work_dir: Path, nj: int = 1) -> dict[tuple[int, int], str]:
    """(topic, paragraph) -> one audio file for the passage."""
    groups = sentence_wavs(wav_dir(src, split))
    out_dir = work_dir / "spokensquad" / split
    out_dir.mkdir(parents=True, exist_ok=True)
    result, jobs = {}, []
    for key, parts in sorted(groups.items()):
        if len(parts) == 1:
            result[key] = str(parts[0])
        else:
            target = out_dir / f"{key[0]}_{key[1]}.flac"
            result[key] = str(target)
            if not target.is_file():
                jobs.append((parts, target))
    if jobs:
        log(f"Spoken-SQuAD {split}: concatenating sentence wavs of {len(jobs)} passages → {out_dir}")
        if nj > 1 and len(jobs) > 50:
            with multiprocessing.get_context("fork").Pool(nj) as pool:
                errors = list(tqdm(pool.imap(_concat, jobs, chunksize=16), total=len(jobs), unit="passage"))
        else:
            errors = [_concat(job) for job in tqdm(jobs, unit="passage", disable=len(jobs) < 200)]
        errors = [e for e in errors if e]
        if errors:
            raise CorpusError(f"Spoken-SQuAD {split}: {len(errors)} passage(s) could not be built, e.g. {errors[0]}")
    return result


def read_translations(path: Path) -> dict[str, tuple[str, str]]:
    rows = read_tsv(path)
    require_columns(path, rows, ("id", "question", "answer"))
    return {row["id"]: (normalize_text(row["question"]), normalize_text(row["answer"])) for _, row in rows}


def build_utts(questions: list[Question], audio: dict[tuple[int, int], str], lang: str, ratio: float, seed: int,
               split: str, translations: dict[str, tuple[str, str]] | None = None) -> tuple[list[Utt], Counter]:
    dropped: Counter = Counter()
    prefix = f"spokensquad_{lang}"
    answerable: list[tuple[Question, str, str]] = []  # (question, question text, answer) in the target language
    for q in questions:
        if translations is not None:
            if q.qid not in translations or not all(translations[q.qid]):
                dropped[f"no {lang} translation of the question"] += 1
                continue
            text_q, text_a = translations[q.qid]
        else:
            text_q, text_a = q.question, q.answer
        if not text_q or not text_a:
            dropped["empty question or answer"] += 1
            continue
        if (q.topic, q.paragraph) not in audio:
            dropped["passage audio missing"] += 1
            continue
        answerable.append((q, text_q, text_a))
    utts = []
    for q, text_q, text_a in answerable:
        speaker = f"{prefix}-{q.topic}_{q.paragraph}"
        utts.append(Utt(f"{speaker}-{q.qid}", speaker, audio[(q.topic, q.paragraph)], text_a, lang, "answer",
                        question=text_q, transcript=q.context))
    # Unanswerable: the same question over a passage of another article. The draw depends on the seed and the
    # split only, so every language pairs the same questions with the same passages.
    n_extra = round(ratio * len(answerable))
    if n_extra:
        rng = random.Random(f"spokensquad-{split}-{seed}")
        passages = sorted(audio)
        contexts = {(q.topic, q.paragraph): q.context for q in questions}
        picked = rng.sample(range(len(answerable)), min(n_extra, len(answerable)))
        for i in sorted(picked):
            q, text_q, _ = answerable[i]
            others = [key for key in passages if key[0] != q.topic]
            if not others:
                dropped["unanswerable: no passage from another article"] += 1
                continue
            key = others[rng.randrange(len(others))]
            speaker = f"{prefix}-{key[0]}_{key[1]}"
            utts.append(Utt(f"{speaker}-na-{q.qid}", speaker, audio[key], unanswerable(lang), lang, "answer",
                            question=text_q, transcript=contexts.get(key) or None))
    return utts, dropped


def plans(path: str | None, work_dir: str, unanswerable_ratio: float = 0.25, seed: int = 1,
          translations_dir: str | None = None, nj: int = 1, dev_fraction: float = DEV_FRACTION,
          **_options) -> list[Plan]:
    if not 0 <= dev_fraction < 1:
        raise CorpusError(f"--sqa_dev_fraction must be in [0, 1), got {dev_fraction}")
    src = source(path)
    work = Path(work_dir).resolve()
    langs = {"en": None}
    if translations_dir:
        tdir = Path(translations_dir)
        if not tdir.is_dir():
            raise CorpusError(f"--sqa_translations {translations_dir}: no such directory (it should hold "
                              "<lang>.tsv files with columns id, question, answer)")
        for lang in ("de", "it", "zh"):
            if (tdir / f"{lang}.tsv").is_file():
                langs[lang] = tdir / f"{lang}.tsv"
    # data dir split -> (JSON split, which articles: "train" = not held out, "dev" = held out, None = all)
    splits = {"train": ("train", "train"), "test": ("test", None)}
    if dev_fraction > 0:
        splits = {"train": ("train", "train"), "dev": ("train", "dev"), "test": ("test", None)}
    checked, caches = set(), {}
    out = []
    for name, (json_split, part) in splits.items():
        json_name = SPLITS[json_split][0]
        json_path = src.need(json_name)
        if json_split not in checked:
            wav_dir(src, json_split)  # layout check now, before any corpus is read
            checked.add(json_split)
        cache = caches.setdefault(json_split, {})

        def produce(lang, tsv, name=name, json_split=json_split, part=part, json_path=json_path, cache=cache):
            if "questions" not in cache:  # one read of the JSON and the passage audio serves train and dev
                cache["questions"] = read_questions(json_path)
                cache["audio"] = passage_audio(src, json_split, work, nj)
                cache["dev"] = dev_topics(cache["questions"], dev_fraction) if json_split == "train" else set()
            questions, audio = cache["questions"], cache["audio"]
            if part is not None:
                keep = (lambda t: t in cache["dev"]) if part == "dev" else (lambda t: t not in cache["dev"])
                questions = [q for q in questions if keep(q.topic)]
                audio = {key: value for key, value in audio.items() if keep(key[0])}
            translations = read_translations(tsv) if tsv else None
            return build_utts(questions, audio, lang, unanswerable_ratio, seed, name, translations)

        for lang, tsv in langs.items():
            # a translations file is identified by path, size and mtime: editing it rebuilds the dir
            stamp = f"{tsv}:{tsv.stat().st_size}:{tsv.stat().st_mtime_ns}" if tsv else None
            fp = fingerprint("spoken_squad", VERSION, src.root(), split=name, unanswerable_ratio=unanswerable_ratio,
                             seed=seed, translations=stamp,
                             dev_fraction=dev_fraction if json_split == "train" else None)
            # translations may cover some splits only (e.g. train): a split without any is skipped, not an error
            out.append(Plan(f"spokensquad_{lang}_{name}", fp,
                            lambda lang=lang, tsv=tsv, produce=produce: produce(lang, tsv), optional=tsv is not None))
    return out
