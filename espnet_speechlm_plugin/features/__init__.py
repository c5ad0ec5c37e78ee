"""Speech features for the w2v-BERT encoder (recipe stage 2).

``fbank``: SeamlessM4T-compatible 160-dim log-mel features (torch, parity-tested against HF).
``audio``: wav.scp reading, resampling to 16 kHz and downmixing. ``bin/featurize.py`` ties them to a data dir.
"""
from espnet_speechlm_plugin.features.fbank import FEAT_DIM, MIN_NUM_SAMPLES, compute_fbank, compute_fbank_batch

__all__ = ["FEAT_DIM", "MIN_NUM_SAMPLES", "compute_fbank", "compute_fbank_batch"]
