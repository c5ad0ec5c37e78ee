#!/usr/bin/env bash
# mini_espeak: the embedded CPU demo. Synthesises a small en/de/it/zh speech corpus with espeak-ng, then trains,
# decodes and scores a tiny speech-LLM on all three tasks (transcribe, translate, answer) on 2 CPU cores.
# `make demo` runs exactly this (README.md in this folder; results: RESULTS.md). E.g.
#   ./run.sh --stage 1 --stop_stage 5      # stop after decoding
#   ./run.sh --stage 3                     # rerun from training (finished stages are no-ops)
#   ./run.sh --nthreads 2                  # faster on an otherwise idle 2-core machine
#   ./run.sh --compressor_layers 0         # a variant: 2x total compression (docs/compression.md)
#   ./run.sh --seed 1                      # the default model, another seed
# A run other than the default writes its own dirs, so variants sit side by side on the same data and features:
# exp/init_conv<K>[_seed<N>] (initial models; the encoder's CTC pretraining runs behind the K Conv1d layers) and
# exp/tiny_conv<K>_<A><N>x<S>[_seed<N>]_stage{1,2} (results: ..._stage2/RESULTS.md; A: adapter or w2v_adapter).
# Options of this script come first below; every other option goes to speechlm.sh, listed after them with the
# values this script gives them.
set -euo pipefail

# ---- options of this script (--help lists them from here) ----
seed=0                # seed of the initial models, their pretraining and both training stages (the corpus has
                      # its own: --local_data_opts "... --seed M")
compressor_layers=2   # Conv1d (k3, s2) layers before the encoder, 0-3 (2: 50 Hz -> 12.5 Hz); the defaults must
                      # equal conf/stage{1,2}_tiny.yaml (tests/test_configs.py checks it)
adapter=conformer     # the length adapter after the encoder: conformer or w2v_bert_adapter
adapter_layers=1      # its layers
adapter_stride=2      # their stride; total compression = 2^compressor_layers x adapter_stride^adapter_layers
tag=""                # experiment name (empty: tiny, or tiny_conv<K>_<A><N>x<S>[_seed<N>] for a variant)
stage1_args=""        # extra training options of stage 3, after the variant's own
stage2_args=""        # extra training options of stage 4, after the variant's own
# ---- end of options ----

. utils/options.sh
parse_recipe_options "$0" "$@"  # sets the options above; the rest go to speechlm.sh

init_dir=exp/init
model_suffix=""
common=() stage1=()
case "${adapter}" in
    conformer) adapter_name=adapter adapter_conf=() ;;
    w2v_bert_adapter) adapter_name=w2v_adapter adapter_conf=(--length_adapter_conf kernel_size=3) ;;  # HF's own k
    *) echo "$0: --adapter must be conformer or w2v_bert_adapter, not ${adapter}" >&2; exit 1 ;;
esac
if [ "${compressor_layers}/${adapter}/${adapter_layers}/${adapter_stride}" != 2/conformer/1/2 ] || [ "${seed}" != 0 ]; then
    init_dir="exp/init_conv${compressor_layers}"
    model_suffix="_conv${compressor_layers}_${adapter_name}${adapter_layers}x${adapter_stride}"
    if [ "${seed}" != 0 ]; then
        init_dir+="_seed${seed}"
        model_suffix+="_seed${seed}"
    fi
    common=(--encoder_conf "name_or_path=${init_dir}/encoder" --decoder_conf "name_or_path=${init_dir}/decoder"
            --length_adapter "${adapter}" --length_adapter_conf "num_layers=${adapter_layers}"
            --length_adapter_conf "stride=${adapter_stride}" "${adapter_conf[@]}")
    if [ "${compressor_layers}" -gt 0 ]; then
        common+=(--compressor conv1d --compressor_conf "num_layers=${compressor_layers}")
        stage1=(--init_param "${init_dir}/encoder/compressor.pth::compressor")
    else
        common+=(--compressor none)
        stage1=(--init_param)  # no compressor, nothing to start from
    fi
fi

./speechlm.sh \
    --train_set train --valid_set dev --test_sets "test" \
    --tag "${tag:-tiny${model_suffix}}" \
    --seed "${seed}" \
    --local_data_opts "--n_train 8000 --n_dev 100 --n_test 800 --frac_transcribe 0.2 --frac_translate 0.3 --frac_answer 0.4 --frac_transcribe_other 0.1" \
    --make_init true --init_dir "${init_dir}" \
    --init_args "--vocab_size 1500 --encoder_hidden 128 --encoder_layers 2 --decoder_hidden 128 --decoder_layers 2" \
    --init_lm_steps 2000 \
    --init_encoder_steps 1600 \
    --init_compressor_layers "${compressor_layers}" \
    --stage1_config conf/stage1_tiny.yaml \
    --stage2_config conf/stage2_tiny.yaml \
    --stage1_args "${common[*]} ${stage1[*]} ${stage1_args}" \
    --stage2_args "${common[*]} ${stage2_args}" \
    --decode_args "--batch_size 32" \
    "${rest[@]}" "${help_opt[@]}"
