#!/usr/bin/env bash
# Generic speech-LLM recipe: data → features → stage-1 alignment → stage-2 SFT → decode → score → pack → upload.
# A recipe's run.sh sets the options and calls this script; any option can be overridden on the command line:
#   ./run.sh --stage 3 --stop_stage 5 --nthreads 2
# Stages (each logs "Stage N: …", skips work whose outputs are complete, and can be rerun alone):
#   1 data prep (local/data.sh)           → data/<set>/{wav.scp,text,utt2spk,prompt}
#   2 features + initial models           → dump/<set>/{feats.scp,speech_shape,…}, exp/init (only if make_init)
#   3 stage-1 alignment (frozen enc + LM) → exp/<tag>_stage1/
#   4 stage-2 instruction SFT             → exp/<tag>_stage2/
#   5 decode every test set               → exp/<tag>_stage2/decode_<model>/<set>/text
#   6 score                               → exp/<tag>_stage2/RESULTS.md, results.json
#   7 pack (ESPnet model-zoo zip)         → exp/<tag>_stage2/packed/model.zip
#   8 upload to the HF hub (only with --skip_upload false; --dry_run true writes the repo folder)
set -euo pipefail

# ---- options (each one can be given as --name value) ----
stage=1
stop_stage=8
nthreads=1            # torch threads per process. 1 is robust when another process shares the cores; on an
                      # idle 2-core machine 2 threads train ~1.8x faster.
ngpu=0
nj=2                  # parallel jobs for feature extraction
train_set=train
valid_set=dev
test_sets="test"
tag=speechlm
data_args=""          # passed to local/data.sh
make_init=false       # stage 2: make tiny random encoder/LM + corpus tokenizer in exp/init (no hub needed)
init_args=""          # passed to make_tiny_init
init_lm_steps=0       # with make_init: text pretraining steps of the tiny LM (0 = leave it random)
init_encoder_steps=0  # with make_init: CTC pretraining steps of the tiny encoder (0 = leave it random)
init_compressor_layers=0  # Conv1d layers in front of the encoder during its CTC pretraining (as in the config);
                      # their weights go to exp/init/encoder/compressor.pth for stage 1's --init_param
stage1_config=conf/stage1.yaml
stage2_config=conf/stage2.yaml
skip_stage1=false
stage1_args=""        # extra training options, e.g. "--max_epoch 3"
stage2_args=""
inference_model=valid.acc.best.pth
decode_args=""        # e.g. "--batch_size 32 --max_new_tokens 100"
score_args=""
skip_upload=true
hf_repo=""
dry_run=false

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
export OMP_NUM_THREADS="${nthreads}" MKL_NUM_THREADS="${nthreads}"
python=python3
exp1="exp/${tag}_stage1"
exp2="exp/${tag}_stage2"
[ "${skip_stage1}" = true ] && exp1=""

# data options of one training run: features, prompt and target of the train and valid sets, with shape files
data_opts() {
    local s
    for s in train valid; do
        local d="dump/${train_set}"
        [ "${s}" = valid ] && d="dump/${valid_set}"
        echo "--${s}_data_path_and_name_and_type ${d}/feats.scp,speech,kaldi_ark"
        echo "--${s}_data_path_and_name_and_type ${d}/prompt,prompt,text"
        echo "--${s}_data_path_and_name_and_type ${d}/text,text,text"
        echo "--${s}_shape_file ${d}/speech_shape"
    done
}

train() {  # train CONFIG OUTDIR EXTRA...: ESPnet Trainer; --resume makes a rerun continue (or do nothing)
    local config="$1" outdir="$2"; shift 2
    mkdir -p "${outdir}"
    # shellcheck disable=SC2046
    run_cmd "${outdir}/train.log" ${python} -m espnet_speechlm_plugin.bin.speechlm_train \
        --config "${config}" --output_dir "${outdir}" --ngpu "${ngpu}" --resume true \
        $(data_opts) "$@"
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation → data/"
    # shellcheck disable=SC2086
    local/data.sh ${data_args}
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: features → dump/"
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        ${python} -m espnet_speechlm_plugin.bin.featurize --data_dir "data/${dset}" --out_dir "dump/${dset}" --nj "${nj}"
    done
    if [ "${make_init}" = true ]; then
        if [ -f exp/init/decoder/config.json ]; then
            log "exp/init exists: keeping the initial models"
        else
            log "Making tiny initial models and the corpus tokenizer → exp/init"
            # shellcheck disable=SC2086
            ${python} -m espnet_speechlm_plugin.bin.make_tiny_init --text "dump/${train_set}/text" \
                "dump/${train_set}/prompt" --out_dir exp/init ${init_args}
        fi
        # the two pretrainings are independent: run them side by side, one thread each
        pids=()
        if [ "${init_lm_steps}" -gt 0 ]; then
            log "Pretraining the tiny LM on the training text (${init_lm_steps} steps) → exp/init/decoder"
            ${python} -m espnet_speechlm_plugin.bin.pretrain_tiny --what lm --data_dir "dump/${train_set}" \
                --model_dir exp/init/decoder --steps "${init_lm_steps}" --nthreads "${nthreads}" &
            pids+=($!)
        fi
        if [ "${init_encoder_steps}" -gt 0 ]; then
            log "Pretraining the tiny encoder with CTC (${init_encoder_steps} steps) → exp/init/encoder"
            ${python} -m espnet_speechlm_plugin.bin.pretrain_tiny --what encoder --data_dir "dump/${train_set}" \
                --model_dir exp/init/encoder --tokenizer exp/init/tokenizer \
                --compressor_layers "${init_compressor_layers}" --steps "${init_encoder_steps}" \
                --nthreads "${nthreads}" &
            pids+=($!)
        fi
        for pid in "${pids[@]}"; do wait "${pid}"; done
    fi
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ] && [ -n "${exp1}" ]; then
    log "Stage 3: stage-1 alignment (encoder + LM frozen) → ${exp1}"
    # shellcheck disable=SC2086
    train "${stage1_config}" "${exp1}" ${stage1_args}
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: stage-2 instruction SFT → ${exp2}"
    init=()
    [ -n "${exp1}" ] && init=(--init_param "${exp1}/valid.loss.best.pth")
    # shellcheck disable=SC2086
    train "${stage2_config}" "${exp2}" "${init[@]}" ${stage2_args}
fi

decode_dir="${exp2}/decode_${inference_model%.pth}"
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    log "Stage 5: decoding ${test_sets} with ${exp2}/${inference_model} → ${decode_dir}"
    for dset in ${test_sets}; do
        out="${decode_dir}/${dset}"
        if [ -f "${out}/text" ] && [ "$(wc -l < "${out}/text")" -eq "$(wc -l < "dump/${dset}/prompt")" ]; then
            log "${out}/text is complete: skipping"
            continue
        fi
        # shellcheck disable=SC2086
        run_cmd "${out}/decode.log" ${python} -m espnet_speechlm_plugin.bin.decode --config "${exp2}/config.yaml" \
            --model_file "${exp2}/${inference_model}" --data_dir "dump/${dset}" --out_dir "${out}" \
            --nthreads "${nthreads}" ${decode_args}
    done
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: scoring → ${exp2}/RESULTS.md"
    # shellcheck disable=SC2086
    ${python} -m espnet_speechlm_plugin.bin.score --decode_dir "${decode_dir}" --ref_dir dump \
        --test_sets "${test_sets}" --out_dir "${exp2}" --model_tag "${tag}" --config "${exp2}/config.yaml" ${score_args}
fi

if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    log "Stage 7: packing → ${exp2}/packed/model.zip"
    ${python} -m espnet_speechlm_plugin.bin.pack --exp_dir "${exp2}" --model_file "${inference_model}" \
        --out "${exp2}/packed/model.zip"
fi

if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
    if [ "${skip_upload}" = true ]; then
        log "Stage 8: upload skipped (--skip_upload true)"
    else
        [ -n "${hf_repo}" ] || { log "Stage 8: set --hf_repo user/name to upload"; exit 1; }
        log "Stage 8: uploading ${exp2}/packed to the HF hub repo '${hf_repo}' (dry run: ${dry_run})"
        ${python} -m espnet_speechlm_plugin.bin.pack --exp_dir "${exp2}" --model_file "${inference_model}" \
            --out "${exp2}/packed/model.zip" --hf_repo "${hf_repo}" --dry_run "${dry_run}"
    fi
fi
log "Done (stages ${stage}..${stop_stage})"
