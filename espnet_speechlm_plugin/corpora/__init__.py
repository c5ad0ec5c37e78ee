"""Readers of the public corpora the IWSLT recipe trains and tests on, one module per corpus.

Where it sits: recipe stage 1. ``egs2/iwslt25_if/s2t1/local/data.sh`` runs
``python -m espnet_speechlm_plugin.corpora.prepare``, which checks each corpus's on-disk layout (``locate`` finds a
release under ``--corpora_root``), asks each reader (librispeech, mls, common_voice, covost2, fleurs, spoken_squad,
acl6060) for its data dirs, and writes them with ``common.prepare_dir``. It is package code, not recipe code,
because the tests and any recipe built on these corpora import it; ``bin/make_fixture_corpora`` writes small
corpora in the layouts these readers document.
"""
