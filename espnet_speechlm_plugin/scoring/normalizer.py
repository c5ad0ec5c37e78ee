"""The text normalisers applied before WER, behaving as those of the official MCIF / IWSLT 2025 evaluation.

Where it sits: `scoring.metrics` (our per-utterance WER/CER) and `scoring.official` (the official MCIF scores) call
`normalize(text, lang)`; nothing else in the project normalises text for WER.

The official evaluation pins whisper_normalizer 0.0.10 and calls `english.EnglishTextNormalizer()` for en and
`basic.BasicTextNormalizer()` otherwise. We install whisper-normalizer 0.1.15, which differs from 0.0.10 in exactly
these ways (both wheels' sources compared file by file):
- 0.1.15 adds four replacements to the English normaliser: kinda -> kind of, sorta -> sort of, dunno -> do not
  know, cause -> because. 0.0.10 leaves those words alone; we remove the four entries.
- 0.0.10 downloads OpenAI's spelling table (openai/whisper `whisper/normalizers/english.json`) from GitHub each time
  the English normaliser is built; 0.1.15 ships a copy, which differs from OpenAI's in one value: "archaeology" maps
  to "archeology</span>" instead of "archeology". We use the shipped copy with that value corrected, so nothing is
  downloaded.
- The basic normaliser gained an optional `preserve_marks` argument whose default keeps 0.0.10's behaviour.
Everything else (number and currency handling, the other contractions, symbol removal) is the same code.
"""
from __future__ import annotations

import functools
import hashlib
import json
import warnings

# The English replacements whisper-normalizer added after 0.0.10 (regex pattern -> replacement in 0.1.15).
ADDED_AFTER_0_0_10 = (r"\bkinda\b", r"\bsorta\b", r"\bdunno\b", r"\bcause\b")
# Where the shipped spelling table differs from OpenAI's english.json, which 0.0.10 downloads: OpenAI's values.
SPELLING_FIXES = {"archaeology": "archeology"}
# Fingerprints of what 0.0.10 uses: its 49 replacements in order (sha256 of the JSON list of (pattern, replacement)
# pairs, computed from the 0.0.10 wheel) and OpenAI's 1739 spellings (sha256 of the JSON of the sorted pairs). A
# whisper-normalizer release that changes either is refused instead of giving WERs the official one does not give.
REPLACERS_SHA256 = "102ac92ef00fda0141de01309cff16b349977fa0f4c500ee155cdfd7e46ab097"
SPELLINGS_SHA256 = "ff599e7ca6a21254823cfc2d9f9a42c0810e0274e4ce3568f90c39267a88bcbb"


class NormalizerVersionError(RuntimeError):
    """The installed whisper-normalizer is not the one this module knows how to make behave like 0.0.10."""


def _english():
    with warnings.catch_warnings():  # the package's source has an invalid escape in a docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        from whisper_normalizer.english import EnglishTextNormalizer
    norm = EnglishTextNormalizer()
    missing = [p for p in ADDED_AFTER_0_0_10 if p not in norm.replacers]
    if missing:
        raise NormalizerVersionError(
            f"whisper-normalizer's EnglishTextNormalizer has no replacement {missing}; this module removes the ones "
            f"0.1.15 added to 0.0.10 (the official evaluation's version): install whisper-normalizer==0.1.15"
        )
    for pattern in ADDED_AFTER_0_0_10:
        del norm.replacers[pattern]
    mapping = dict(norm.standardize_spellings.mapping)
    mapping.update(SPELLING_FIXES)
    norm.standardize_spellings.mapping = mapping
    for what, value, expected in (
        ("replacements", list(norm.replacers.items()), REPLACERS_SHA256),
        ("spelling table", sorted(mapping.items()), SPELLINGS_SHA256),
    ):
        if hashlib.sha256(json.dumps(value).encode()).hexdigest() != expected:
            raise NormalizerVersionError(
                f"whisper-normalizer's English {what} differ from version 0.0.10's (the official evaluation's) "
                f"after this module's corrections; it was checked with whisper-normalizer 0.1.15: install that")
    return norm


@functools.lru_cache(maxsize=None)
def official_normalizer(lang: str):
    """The callable the official evaluation uses for `lang`: English normaliser for en, basic otherwise."""
    if lang == "en":
        return _english()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from whisper_normalizer.basic import BasicTextNormalizer
    return BasicTextNormalizer()


def normalize(text: str, lang: str) -> str:
    """`text` as the official evaluation normalises it (the normaliser's own output, spaces not collapsed)."""
    return official_normalizer(lang)(text)


def normalizer_name(lang: str) -> str:
    """How RESULTS.md names the normaliser of `lang`."""
    if lang == "en":
        return "whisper_normalizer EnglishTextNormalizer as in version 0.0.10 (the official evaluation's)"
    return "whisper_normalizer BasicTextNormalizer"
