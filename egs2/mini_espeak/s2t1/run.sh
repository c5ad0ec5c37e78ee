#!/usr/bin/env bash
# mini_espeak: the embedded CPU demo. Synthesises a small en/de/it/zh speech corpus with espeak-ng, then trains,
# decodes and scores a tiny speech-LLM on all three tasks (transcribe, translate, answer) in about 15 minutes on
# 2 CPU cores. `make demo` runs exactly this. Options: see ../../TEMPLATE/s2t1/speechlm.sh; e.g.
#   ./run.sh --stage 1 --stop_stage 5      # stop after decoding
#   ./run.sh --stage 3                     # rerun from training (finished stages are no-ops)
#   ./run.sh --nthreads 2                  # faster on an otherwise idle 2-core machine
set -euo pipefail

./speechlm.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --tag tiny \
    --data_args "--n_train 8000 --n_dev 100 --n_test 800 --frac_transcribe 0.2 --frac_translate 0.3 --frac_answer 0.4 --frac_transcribe_other 0.1" \
    --make_init true \
    --init_args "--vocab_size 1500 --encoder_hidden 128 --encoder_layers 2 --decoder_hidden 128 --decoder_layers 2" \
    --init_lm_steps 2000 \
    --init_encoder_steps 1600 \
    --init_compressor_layers 2 \
    --stage1_config conf/stage1_tiny.yaml \
    --stage2_config conf/stage2_tiny.yaml \
    --decode_args "--batch_size 32" \
    "$@"
