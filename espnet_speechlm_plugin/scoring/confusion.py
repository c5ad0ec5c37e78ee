"""Task-confusion diagnostic: which task did an output actually perform?

Where it sits: stage 6 (`scoring.report`) labels every hypothesis with `classify_output` and reports, per task, the
fraction of outputs that performed another task than asked (`task_confusion`) and an asked x performed matrix.
The diagnostic of `scoring.diagnostic` (same audio decoded with every task prompt) reuses `classify_output` and
`confusion_matrix`.

How one output is labelled (first rule that fires):
1. empty output                                                   -> "other"
2. character similarity to the source transcript >= 0.8           -> "transcribed"
3. a question was in the prompt and similarity to it >= 0.8       -> "echoed_question"
4. the output is an unanswerable string ("Not answerable." ...,
   `metrics.unanswerable_strings`)                                -> "answered"
5. the output's language L is identified (`identify_language`):
   - with a question: L unknown, L == the question's language, or
     the question's language plausible (see below)                  -> "answered"
   - L unknown                                                    -> "other"
   - L == the transcript's language                               -> "transcribed"  (an attempt with errors)
   - otherwise                                                    -> "translated:<L>"
Only a prompt with a question can be "answered" (bar rule 4): without a question there is nothing to answer.

Similarity is difflib's ratio on case-folded text without punctuation, so 1.0 = identical, ~0.5 = loosely related.
Languages are identified by `espnet_speechlm_plugin.langid` (the Lingua library), restricted to the languages in
play: the `languages` a caller passes (stage 6: the test set's prompt languages plus the training config's
`languages:`), by default `vocab.DEFAULT_LANGUAGES`. A text too short or ambiguous to tell (Lingua's confidence
< 0.5, e.g. the one word "rot") is unidentified. For an output with a question, rule 5 counts it "answered" also
when the question's language is merely plausible (confidence >= `PLAUSIBLE`): one-word answers such as "rosa"
or "sei" are words of several languages.
"""
from __future__ import annotations

import difflib
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable, Optional

from espnet_speechlm_plugin import langid
from espnet_speechlm_plugin.scoring.metrics import is_unanswerable
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES

SIMILARITY_THRESHOLD = 0.8

PLAUSIBLE = 0.1


def identify_language(text: str, languages: Optional[Iterable[str]] = None) -> Optional[str]:
    """The language of `text` among `languages` (default `vocab.DEFAULT_LANGUAGES`), or None: no letters, or too
    short or ambiguous to tell (`langid.identify_language`)."""
    return langid.identify_language(text, DEFAULT_LANGUAGES if languages is None else languages)


def _for_similarity(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return " ".join(text.split())


def similarity(a: str, b: str) -> float:
    """Character-level ratio in [0, 1] of two texts, ignoring case, punctuation and extra whitespace."""
    a, b = _for_similarity(a), _for_similarity(b)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def classify_output(
    output: str,
    *,
    transcript: Optional[str] = None,
    transcript_lang: Optional[str] = None,
    question: Optional[str] = None,
    question_lang: Optional[str] = None,
    languages: Optional[Iterable[str]] = None,
    unanswerable: Optional[Iterable[str]] = None,
) -> str:
    """Label one output: "transcribed", "translated:<lang>", "answered", "echoed_question" or "other".

    transcript: the transcript of the audio in its source language (None if unknown: then "transcribed" can only
        come from `transcript_lang`); transcript_lang: its language (identified from `transcript` if None);
    question: the question of an `answer` prompt (None for other prompts); question_lang: its language, i.e. the
        expected answer language (identified from `question` if None);
    languages: the languages in play, among which the output's language is identified (default
    `vocab.DEFAULT_LANGUAGES`); the given transcript/question languages are added to them;
    unanswerable: the unanswerable strings of the languages in play (default: the built-in table).
    """
    if not _for_similarity(output):
        return "other"
    if transcript and similarity(output, transcript) >= SIMILARITY_THRESHOLD:
        return "transcribed"
    if question and similarity(output, question) >= SIMILARITY_THRESHOLD:
        return "echoed_question"
    if is_unanswerable(output, unanswerable):
        return "answered"
    candidates = set(DEFAULT_LANGUAGES if languages is None else languages)
    candidates |= {x for x in (transcript_lang, question_lang) if x}
    if transcript_lang is None and transcript:
        transcript_lang = identify_language(transcript, candidates)
    if question:
        if question_lang is None:
            question_lang = identify_language(question, candidates)
        confidence = langid.language_confidences(output, candidates)
        lang = langid.identify_language(output, candidates)
        if lang is None or lang == question_lang or confidence.get(question_lang, 0.0) >= PLAUSIBLE:
            return "answered"
    else:
        lang = identify_language(output, candidates)
    if lang is None:
        return "other"
    if lang == transcript_lang:
        return "transcribed"
    return f"translated:{lang}"


def asked_label(task: str, lang: str) -> str:
    """Row label of the confusion matrix: the task asked and the expected output language."""
    return f"{task}:{lang}"


def expected_label(task: str, lang: str) -> str:
    """What `classify_output` returns for an output that did what the prompt asked."""
    return {"transcribe": "transcribed", "translate": f"translated:{lang}", "answer": "answered"}[task]


def is_confusion(task: str, lang: str, performed: str) -> bool:
    """True if the output performed another task (or translated into another language) than asked.

    "other" (empty or unidentifiable output) is a failure but not evidence of another task, so it is not counted.
    """
    return performed not in (expected_label(task, lang), "other")


def task_confusion_rate(task: str, lang: str, performed: list[str]) -> Optional[float]:
    """Fraction of outputs of a (task, lang) whose performed label `is_confusion`; None for no output."""
    if not performed:
        return None
    return sum(is_confusion(task, lang, p) for p in performed) / len(performed)


def _performed_order(label: str) -> tuple:
    order = ["transcribed", "translated", "answered", "echoed_question", "other"]
    head, _, lang = label.partition(":")
    return (order.index(head) if head in order else len(order), lang)


def confusion_matrix(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[str], dict[str, Counter]]:
    """Count (asked, performed) label pairs; returns (row labels, column labels, {row: Counter(column)}),
    columns in the order transcribed, translated:*, answered, echoed_question, other."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for asked, performed in pairs:
        counts[asked][performed] += 1
    columns = sorted({p for c in counts.values() for p in c}, key=_performed_order)
    return list(counts), columns, dict(counts)
