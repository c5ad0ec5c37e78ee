"""Tiny COMET models built offline for tests: a CometKiwi-style QE model and a wmt22-comet-da-style metric.

Shared by the pseudo-labelling tests (tests/test_pseudolabel.py, kind "qe": COMETKiwi filtering) and the scoring
tests (tests/test_scoring_comet.py, kind "ref": COMET of stage 6). They are built by
``espnet_speechlm_plugin.bin.make_standins`` (the rehearsal of the IWSLT recipe uses the same stand-ins); see its
docstring for the on-disk layout (COMET's ``download_model`` layout, so the real loading path is exercised).
"""
from espnet_speechlm_plugin.bin.make_standins import (  # noqa: F401
    SP_TEXT,
    build_tiny_comet,
    build_tiny_xlmr,
    train_sentencepiece,
)
