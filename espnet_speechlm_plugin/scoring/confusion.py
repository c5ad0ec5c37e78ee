"""Task-confusion diagnostic: which task did an output actually perform?

Where it sits: stage 6 (`scoring.report`) labels every hypothesis with `classify_output` and reports, per task, the
fraction of outputs that performed another task than asked (`task_confusion`) and an asked x performed matrix.
The issue-6 diagnostic (same audio decoded with every task prompt) reuses `classify_output` and `confusion_matrix`.

How one output is labelled (first rule that fires):
1. empty output                                                   -> "other"
2. character similarity to the source transcript >= 0.8           -> "transcribed"
3. a question was in the prompt and similarity to it >= 0.8       -> "echoed_question"
4. the output is an unanswerable string ("Not answerable." ...)   -> "answered"
5. the output's language L is identified (`identify_language`):
   - with a question: L unknown or L == the question's language   -> "answered"
   - L unknown                                                    -> "other"
   - L == the transcript's language                               -> "transcribed"  (an attempt with errors)
   - otherwise                                                    -> "translated:<L>"
Only a prompt with a question can be "answered" (bar rule 4): without a question there is nothing to answer.

Similarity is difflib's ratio on case-folded text without punctuation, so 1.0 = identical, ~0.5 = loosely related.
Language identification is deliberately simple and documented rather than learned: Han characters are zh
(script detection); for Latin script, distinctive stop words (each +1) and character cues (umlauts/ß for de,
grave accents for it, "th"/"sch"/"zz"-like n-grams, +0.5 each) and, for it, ">= 80 % of >= 2 words end in a vowel"
(+1) are summed; the best-scoring language wins if it scores >= 1 and is unique. A one-word output without cues
("rot") is unidentified.
"""
from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Iterable, Optional

from espnet_speechlm_plugin.scoring.metrics import is_unanswerable

SIMILARITY_THRESHOLD = 0.8

# Words that occur often in one language and rarely or never as a word of the others (so "in", "a", "was",
# "die"-as-verb ambiguities are left out on purpose).
_STOP_WORDS = {
    "en": """the is are was were be been and of to it its this that these those what which who where when how
        with on at for from by not no there they he she we you his her their our your my has have had does do did
        can will would very some one two three four five six seven eight nine ten""".split(),
    "de": """der die das den dem des und ist sind nicht ein eine einen einem einer mit auf zu von welche welcher
        welches wie wo wer ich du er sie es wir ihr sehr im zum zur aus bei nach über unter kein keine auch noch
        eins zwei drei vier fünf sechs sieben acht neun zehn farbe""".split(),
    "it": """il lo la le gli un una uno è e di del della dello dei delle che non sono per con su nel nella al
        alla allo cosa quale quali quanti quante dove chi molto anche ci si due tre quattro cinque sei sette otto
        nove dieci colore""".split(),
}
_STOP_WORD_LANG = {w: lang for lang, words in _STOP_WORDS.items() for w in words}

# Character n-grams typical of one language's spelling; weaker evidence than a stop word.
_CHAR_CUES = {
    "en": ("th", "wh", "sh", "ing", "ea", "ou", "ck", "w", "y"),
    "de": ("ä", "ö", "ü", "ß", "sch", "tz", "ei", "ie", "z"),
    "it": ("à", "è", "ì", "ò", "ù", "zz", "gli", "cch", "zione", "tt"),
}
_CUE_WEIGHT = 0.5
_WORD = re.compile(r"[^\W\d_]+")


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"


def identify_language(text: str) -> Optional[str]:
    """'zh', 'en', 'de', 'it' or None (no evidence or a tie); see the module docstring for the rules."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return None
    if sum(_is_han(ch) for ch in letters) >= 0.3 * len(letters):
        return "zh"
    words = _WORD.findall(text.casefold())
    scores: Counter = Counter()
    for w in words:
        if w in _STOP_WORD_LANG:
            scores[_STOP_WORD_LANG[w]] += 1.0
        for lang, cues in _CHAR_CUES.items():
            scores[lang] += _CUE_WEIGHT * sum(w.count(c) for c in cues)
    # Italian words nearly all end in a vowel; English and German sentences rarely do.
    if len(words) >= 2 and sum(w[-1] in "aeiouàèéìòù" for w in words) >= 0.8 * len(words):
        scores["it"] += 1.0
    if not scores:
        return None
    ranked = scores.most_common()
    best, top = ranked[0]
    if top < 1.0 or (len(ranked) > 1 and ranked[1][1] == top):
        return None
    return best


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
) -> str:
    """Label one output: "transcribed", "translated:<lang>", "answered", "echoed_question" or "other".

    transcript: the transcript of the audio in its source language (None if unknown: then "transcribed" can only
        come from `transcript_lang`); transcript_lang: its language (identified from `transcript` if None);
    question: the question of an `answer` prompt (None for other prompts); question_lang: its language, i.e. the
        expected answer language (identified from `question` if None).
    """
    if not _for_similarity(output):
        return "other"
    if transcript and similarity(output, transcript) >= SIMILARITY_THRESHOLD:
        return "transcribed"
    if question and similarity(output, question) >= SIMILARITY_THRESHOLD:
        return "echoed_question"
    if is_unanswerable(output):
        return "answered"
    lang = identify_language(output)
    if transcript_lang is None and transcript:
        transcript_lang = identify_language(transcript)
    if question:
        if question_lang is None:
            question_lang = identify_language(question)
        if lang is None or lang == question_lang:
            return "answered"
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
