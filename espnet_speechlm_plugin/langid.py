"""Which language is a short text in? Language identification for scoring and pseudo-labelling.

Where it sits: the bottom layer (imports nothing of the package). `scoring.confusion` labels a model output
"translated:<lang>" or "transcribed" by the output's language; `pseudolabel.source` drops source transcripts
that are not English before they reach an MT model.

The identifier is Lingua (PyPI `lingua-language-detector`, https://github.com/pemistahl/lingua-py): character
n-gram models of 75 languages shipped inside the wheel, so it runs offline; its rule-based pre-filter plus n-gram
scoring is built for short text (one sentence, a few words), and with its values rounded to 6 decimals it gives
the same answer on every run. A detector is built for the languages in play only -- e.g. a test set's prompt
languages and the training config's `languages:` -- so an output is only ever told apart from the languages it
could plausibly be in, and an English+French recipe loads no German model. Detectors are cached per language set
(models load on first use: five languages took 0.85 s, and the whole process 173 MB; all 75 would take 16 s and
1.3 GB).

A language code is what the prompt files use (`en`, `fr`, `zh`, also `pt-BR` or `zho`): the part before `-`/`_`
is looked up as an ISO 639-1 (two letters) or ISO 639-3 (three letters) code. A code Lingua does not know is left
out of the detector (with a warning naming it), so texts in that language are reported as unidentified rather
than forced into another language.

`identify_language` answers only when Lingua's confidence in its best language is at least `MIN_CONFIDENCE`
(0.5): single words such as "rot", "sept" or "tre" exist in several languages and get ~0.3, whole sentences of
the demo's grammar mostly get > 0.9. Measured on 300 sentences per language of `egs2/mini_espeak`'s grammar
among en/de/it/zh: 4 of 1,200 below 0.5 (unidentified), none wrong; on 300 sentences of the French of
docs/add_a_language.md: 7 unidentified among en/de/it/zh/fr, none among en/fr, none wrong.
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Iterable, Optional

from lingua import IsoCode639_1, IsoCode639_3, Language, LanguageDetectorBuilder

MIN_CONFIDENCE = 0.5

_log = logging.getLogger(__name__)


def lingua_language(code: str) -> Optional[Language]:
    """The Lingua language of a prompt language code, or None if Lingua has no model for it."""
    base = re.split(r"[-_]", code.strip(), maxsplit=1)[0].upper()
    table = IsoCode639_1 if len(base) == 2 else IsoCode639_3 if len(base) == 3 else None
    if table is None or not hasattr(table, base):
        return None
    iso = getattr(table, base)
    if len(base) == 2:
        return Language.from_iso_code_639_1(iso)
    return Language.from_iso_code_639_3(iso)


def is_supported(code: str) -> bool:
    """True if `identify_language` can recognise texts in this language."""
    return lingua_language(code) is not None


@functools.lru_cache(maxsize=16)
def _detector(languages: tuple[str, ...]):
    """(detector, {Lingua language: our code}) for a sorted tuple of distinct language codes."""
    ours: dict[Language, str] = {}
    unknown = []
    for code in languages:
        lang = lingua_language(code)
        if lang is None:
            unknown.append(code)
        else:
            ours.setdefault(lang, code)
    if unknown:
        _log.warning("language identification: Lingua has no model for %s; texts in %s are left unidentified",
                     ", ".join(unknown), "it" if len(unknown) == 1 else "them")
    if not ours:
        return None, ours
    return LanguageDetectorBuilder.from_languages(*ours).build(), ours


def _key(languages: Iterable[str]) -> tuple[str, ...]:
    key = tuple(sorted(set(languages)))
    if not key:
        raise ValueError("language identification needs at least one candidate language")
    return key


def language_confidences(text: str, languages: Iterable[str]) -> dict[str, float]:
    """Lingua's confidence (0..1, 6 decimals, summing to 1 unless the text has no letters) that `text` is in each
    candidate language; a language Lingua does not know gets 0."""
    key = _key(languages)
    detector, ours = _detector(key)
    values = dict.fromkeys(key, 0.0)
    if detector is not None and any(ch.isalpha() for ch in text):
        for cv in detector.compute_language_confidence_values(text):
            # Lingua's values differ from call to call in the last bit (its sums run in hash-map order); rounded,
            # a text gets the same values, and so the same label, every time.
            values[ours[cv.language]] = round(float(cv.value), 6)
    return values


def identify_language(text: str, languages: Iterable[str], min_confidence: float = MIN_CONFIDENCE) -> Optional[str]:
    """The candidate language `text` is written in, or None when the text has no letters or no language reaches
    `min_confidence` (too short or ambiguous to tell)."""
    values = language_confidences(text, languages)
    best = max(values, key=lambda code: (values[code], code))
    return best if values[best] >= min_confidence and values[best] > 0 else None
