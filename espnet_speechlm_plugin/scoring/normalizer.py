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
import warnings

# The English replacements whisper-normalizer added after 0.0.10 (regex pattern -> replacement in 0.1.15).
ADDED_AFTER_0_0_10 = (r"\bkinda\b", r"\bsorta\b", r"\bdunno\b", r"\bcause\b")
# Where the shipped spelling table differs from OpenAI's english.json, which 0.0.10 downloads: OpenAI's values.
SPELLING_FIXES = {"archaeology": "archeology"}


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
    broken = sorted(k for k, v in mapping.items() if "<" in v or ">" in v)
    if broken:
        raise NormalizerVersionError(f"whisper-normalizer's spelling table has markup in the values of {broken}")
    norm.standardize_spellings.mapping = mapping
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
