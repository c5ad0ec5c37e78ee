"""Which English transcripts are worth translating: empty, over-long and non-English ones are skipped with a reason.

Where it sits: the first step of pseudo-labelling (``bin/pseudolabel.py``); every skipped segment is counted per
reason in the report, and nothing skipped is sent to an MT model.

The English check needs no model download (ASR corpora such as Common Voice English hold a few sentences in other
languages, which an MT model would "translate" into nonsense that COMETKiwi may still like):

1. script: at least 90 % of the letters must be Latin letters (rejects Chinese, Cyrillic, Arabic, ... text);
2. language: `espnet_speechlm_plugin.langid` (the Lingua library, offline) chooses among English and the
   Latin-script languages most often found in English speech corpora (`CANDIDATES`); the text is not English when
   it is identified, with confidence >= 0.5, as another of them.

Short or ambiguous sentences that Lingua cannot tell with that confidence pass: too little evidence to drop.
"""
from __future__ import annotations

import unicodedata
from typing import Optional

from espnet_speechlm_plugin import langid

EMPTY, TOO_LONG, NOT_ENGLISH, NO_AUDIO = "empty", "too_long", "not_english", "no_audio"
REASONS = (EMPTY, TOO_LONG, NOT_ENGLISH, NO_AUDIO)
REASON_TEXT = {
    EMPTY: "empty transcript (no letters)",
    TOO_LONG: "longer than --max_src_chars",
    NOT_ENGLISH: "not English (script check / language identification)",
    NO_AUDIO: "utterance missing from wav.scp",
}

# English and the languages whose sentences turn up in English ASR corpora (recorded by non-native speakers or
# left in by mistake); all written in Latin script, which the script check cannot tell apart.
CANDIDATES = ("en", "de", "fr", "it", "es", "nl", "pt")


def _is_latin(ch: str) -> bool:
    return unicodedata.name(ch, "").startswith("LATIN")


def latin_share(text: str) -> float:
    """The share of the letters of `text` that are Latin letters (0 when it has none)."""
    letters = [c for c in text if c.isalpha()]
    return sum(_is_latin(c) for c in letters) / len(letters) if letters else 0.0


def is_english(text: str) -> bool:
    if latin_share(text) < 0.9:
        return False
    return langid.identify_language(text, CANDIDATES) in ("en", None)


def check_source(text: str, max_chars: int) -> Optional[str]:
    """The reason to skip this transcript (one of ``REASONS``), or None when it should be translated."""
    text = text.strip()
    if not any(c.isalpha() for c in text):
        return EMPTY
    if len(text) > max_chars:
        return TOO_LONG
    if not is_english(text):
        return NOT_ENGLISH
    return None
