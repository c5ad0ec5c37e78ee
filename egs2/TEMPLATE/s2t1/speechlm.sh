#!/usr/bin/env bash
# Generic speech-LLM recipe: data → features → stage-1 alignment → stage-2 SFT → decode → score → pack → upload.
# A recipe's run.sh sets the options and calls this script; any option can be overridden on the command line:
#   ./run.sh --stage 3 --stop_stage 5 --nthreads 2
# Stages (each logs "Stage N: …", skips work whose outputs are complete, and can be rerun alone):
#   1 data prep (local/data.sh)           → data/<set>/{wav.scp,text,utt2spk,prompt}
#   2 training mixes (only if train_mix_stage*) → data/<train_set> without any valid/test clip, and one valid set
#     per mix, data/<valid_set>_<mix name>, with caps and a report (data/<train_set>/mix_report.txt);
#     features + initial models           → dump/<set>/{feats.scp,speech_shape,…}, exp/init (only if make_init)
#   3 stage-1 alignment (frozen enc + LM) → exp/<tag>_stage1/  (validates on stage 1's valid set)
#   4 stage-2 instruction SFT             → exp/<tag>_stage2/  (validates on stage 2's valid set)
#   5 decode every test set               → exp/<tag>_stage2/decode_<model>/<set>/text
#   6 score                               → exp/<tag>_stage2/RESULTS.md, results.json, mcif/<set>.xml (the outputs
#     as an MCIF output file; scored with the official MCIF evaluation too when dump/<set>/mcif_ref names references)
#   7 pack (ESPnet model-zoo zip)         → exp/<tag>_stage2/packed/model.zip
#   8 upload to the HF hub (only with --skip_upload_hf false; --dry_run true writes the repo folder)
# Glossary: the recipe stages are numbered 1-8; the paper's two *training* stages are recipe stages 3 and 4
# (paper "stage 1" = alignment = recipe stage 3, exp/<tag>_stage1; paper "stage 2" = instruction SFT = recipe
# stage 4, exp/<tag>_stage2).
set -euo pipefail

# ---- options (each one can be given as --name value; --help lists them from here) ----
# Stages and processes
stage=1               # first recipe stage to run (1-8)
stop_stage=8          # last recipe stage to run (1-8)
nthreads=1            # torch threads per process; 1 is robust when other processes share the cores, 2 trains
                      # ~1.8x faster on an idle 2-core machine
ngpu=0                # GPUs per node for training (> 1: DDP, one process per GPU; docs/multi_gpu.md); each
                      # decoding job uses one
nproc=1               # with ngpu 0: training processes per node on CPU (DDP over gloo)
num_nodes=1           # nodes for training (> 1 needs --cmd_backend slurm): num_nodes x max(ngpu, nproc) processes
nj=2                  # parallel jobs for feature extraction (and CPU cores asked of slurm per job)
inference_nj=1        # stage 5: decoding jobs per test set (merged output is the same as one job's)
cmd_backend=${cmd_backend:-local}  # where jobs run: local (this machine) or slurm (an srun step per job; cmd.sh)
slurm_opts=${slurm_opts:-"--time 24:00:00"}  # added to every srun, e.g. "--partition gpu --time 48:00:00"
# Data (stages 1-2)
train_set=train       # the training data dir, data/<train_set>
valid_set=dev         # the valid data dir; with a training mix that lists 'valid:' dirs, that training stage
                      # validates on <valid_set>_<mix name>
test_sets="test"      # decoded and scored in stages 5-6; their clips are also kept out of training
local_data_opts=""    # options passed to local/data.sh in stage 1 (read by the shell: quote values with spaces,
                      # '--corpora "a b"'); a value given here replaces the recipe's, it is not added to it
# alias --data_args --local_data_opts  accepted until the next release
train_mix_stage1=""   # mix YAML of training stage 1 (data dirs, tasks, weights, duration caps); stage 2 combines
                      # the mixes' dirs into data/<train_set> and training draws each stage's mix per epoch
train_mix_stage2=""   # mix YAML of training stage 2 (see train_mix_stage1)
min_dur=0             # stage 2: drop training utterances shorter than this many seconds (0: keep all); counted
max_dur=0             # stage 2: drop training utterances longer than this many seconds (0: keep all); counted
# Initial models (stage 2; the CPU demo only)
make_init=false       # stage 2: make a tiny random encoder/LM + corpus tokenizer in <init_dir> (no hub needed)
init_dir=exp/init     # where make_init puts them
init_args=""          # options passed to make_tiny_init
init_lm_steps=0       # with make_init: text pretraining steps of the tiny LM (0 = leave it random)
init_encoder_steps=0  # with make_init: CTC pretraining steps of the tiny encoder (0 = leave it random)
init_compressor_layers=0  # Conv1d layers in front of the encoder during its CTC pretraining (as in the config);
                      # their weights go to <init_dir>/encoder/compressor.pth for stage 3's --init_param
# Training (stage 3 = the paper's stage 1, stage 4 = the paper's stage 2)
tag=speechlm          # experiment name: exp/<tag>_stage1, exp/<tag>_stage2
seed=""               # one seed for make_init, its pretraining and both training stages (overrides the configs'
                      # seed); empty: make_init uses 0 and training the configs' own
stage1_config=conf/stage1.yaml  # training config of stage 3 (alignment: encoder and LM frozen)
stage2_config=conf/stage2.yaml  # training config of stage 4 (instruction SFT, per-module learning rates)
skip_stage1=false     # true: no stage 3; stage 4 starts from the config's own initialisation
stage1_tag=""         # stage 3's exp dir is exp/<stage1_tag>_stage1 (empty: <tag>); lets stage-4 variants share it
stage1_args=""        # extra training options of stage 3, e.g. "--max_epoch 3" (override the config)
stage2_args=""        # extra training options of stage 4
# Decoding and scoring (stages 5-6)
inference_model=valid.acc.best.pth  # the checkpoint of exp/<tag>_stage2 that stages 5-8 use
decode_args=""        # decoding options, e.g. "--batch_size 32 --max_new_tokens 100 --beam_size 4"
diagnose_n=0          # stage 5: also decode this many test utterances with every task/language prompt (0 = off)
diagnose_args=""      # options of the diagnostic, e.g. "--source_lang en"
score_args=""         # options of bin/score in stage 6, e.g. "--comet_model /models/wmt22-comet-da"
# Upload to the Hugging Face hub (stage 8)
skip_upload_hf=true   # true: stage 8 does nothing; false: publish exp/<tag>_stage2/packed on --hf_repo
# alias --skip_upload --skip_upload_hf  accepted until the next release
hf_repo=""            # the hub repo, user/name (needed when stage 8 runs)
hf_private=false      # true: create the hub repo as private
hf_license=cc-by-4.0  # license in the model card's metadata
dry_run=false         # true: write exp/<tag>_stage2/packed/hf_repo/ (what would be uploaded), upload nothing
# ---- end of options ----

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
export OMP_NUM_THREADS="${nthreads}" MKL_NUM_THREADS="${nthreads}"
python=python3
exp1="exp/${stage1_tag:-${tag}}_stage1"
exp2="exp/${tag}_stage2"
[ "${skip_stage1}" = true ] && exp1=""

# The valid set of a training stage (its mix YAML as argument): <valid_set>_<mix name> when the mix lists 'valid:'
# dirs (stage 2 builds it from them, so each stage validates on its own tasks), else <valid_set>.
stage_valid_set() {
    [ -n "$1" ] || { echo "${valid_set}"; return 0; }
    ${python} -c 'import sys, yaml; from pathlib import Path
with open(sys.argv[1], encoding="utf-8") as f: mix = yaml.safe_load(f) or {}
print(f"{sys.argv[2]}_{Path(sys.argv[1]).stem}" if isinstance(mix, dict) and mix.get("valid") else sys.argv[2])' \
        "$1" "${valid_set}"
}
valid_set1="$(stage_valid_set "${train_mix_stage1}")"
valid_set2="$(stage_valid_set "${train_mix_stage2}")"
valid_sets="${valid_set2}"
if [ -n "${exp1}" ] && [ "${valid_set1}" != "${valid_set2}" ]; then valid_sets="${valid_set1} ${valid_set2}"; fi
shared_valid=""       # data/<valid_set>, prepared by stage 1, when a stage validates on it (not built by a mix)
if [[ " ${valid_sets} " == *" ${valid_set} "* ]]; then shared_valid="${valid_set}"; fi

# data options of one training run: features, prompt and target of the train set (data_opts) and of a valid set
# (valid_opts SET), with shape files
data_opts() {
    local d="dump/${train_set}"
    echo "--train_data_path_and_name_and_type ${d}/feats.scp,speech,kaldi_ark"
    echo "--train_data_path_and_name_and_type ${d}/prompt,prompt,text"
    echo "--train_data_path_and_name_and_type ${d}/text,text,text"
    echo "--train_shape_file ${d}/speech_shape"
}
valid_opts() {
    local d="dump/$1"
    echo "--valid_data_path_and_name_and_type ${d}/feats.scp,speech,kaldi_ark"
    echo "--valid_data_path_and_name_and_type ${d}/prompt,prompt,text"
    echo "--valid_data_path_and_name_and_type ${d}/text,text,text"
    echo "--valid_shape_file ${d}/speech_shape"
}

# the mix file training reads for a stage: data/<train_set>/<name of the YAML>.json
mix_opts() {
    [ -n "$1" ] && echo "--train_mix data/${train_set}/$(basename "${1%.yaml}").json"
    return 0
}

config_languages() {  # the output languages a training config names (its `languages:`; else the package's default)
    ${python} -m espnet_speechlm_plugin.vocab languages "$1"
}

train() {  # train CONFIG OUTDIR EXTRA...: ESPnet Trainer; --resume makes a rerun continue (or do nothing)
    local config="$1" outdir="$2"; shift 2
    local per_node=$(( ngpu > 0 ? ngpu : nproc ))
    local launch=(${python} -m espnet_speechlm_plugin.bin.speechlm_train) dist=(--ngpu "${ngpu}") tasks=() init=""
    mkdir -p "${outdir}"
    if [ $(( per_node * num_nodes )) -gt 1 ]; then
        # DDP with one process per GPU (or per CPU share): each process is --ngpu 1 (0 on CPU), nccl (gloo on CPU)
        dist=(--ngpu "$(( ngpu > 0 ? 1 : 0 ))" --dist_backend "$([ "${ngpu}" -gt 0 ] && echo nccl || echo gloo)")
        if [ "${cmd_backend}" = slurm ]; then
            # one srun step of num_nodes x per_node tasks; ESPnet reads rank, world size and local rank from
            # SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID and the processes meet through a file in the exp dir
            # (a fresh name per launch: a killed run leaves its file behind)
            rm -f "${outdir}"/.dist_init_*
            init="$(cd "${outdir}" && pwd)/.dist_init_$(date +%s)_$$"
            dist+=(--dist_launcher slurm --dist_init_method "file://${init}")
            tasks=(--nodes "${num_nodes}" --tasks_per_node "${per_node}")
        elif [ "${num_nodes}" -gt 1 ]; then
            log "--num_nodes ${num_nodes} needs --cmd_backend slurm (one node is --ngpu N or --nproc N)"; exit 1
        else  # one node: torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
            launch=(${python} -m torch.distributed.run --standalone --nproc_per_node "${per_node}"
                    -m espnet_speechlm_plugin.bin.speechlm_train)
        fi
    fi
    # shellcheck disable=SC2046
    run_cmd --gpu "${ngpu}" --nj "${nj}" "${tasks[@]}" "${outdir}/train.log" "${launch[@]}" \
        --config "${config}" --output_dir "${outdir}" "${dist[@]}" --resume true ${seed:+--seed "${seed}"} \
        $(data_opts) "$@"
    [ -z "${init}" ] || rm -f "${init}"
}

# SET... each once (unique), those not validated yet (pending), those with a data dir (existing)
unique() { local s seen=" "; for s in "$@"; do [[ "${seen}" == *" ${s} "* ]] || { echo "${s}"; seen+="${s} "; }; done; }
pending() { local s; for s in $(unique "$@"); do [[ "${validated}" == *" ${s} "* ]] || echo "${s}"; done; }
existing() { local s; for s in $(unique "$@"); do [ -d "data/${s}" ] && echo "${s}"; done; return 0; }
validated=" "
validate() {  # validate KIND SET...: stop with file, line, utterance and what to do if a data/SET is broken
    local kind="$1"; shift
    [ $# -gt 0 ] || return 0
    local opts=(--config "${stage2_config}") dirs=() s
    case "${kind}" in
        train) opts+=(--train --min_dur "${min_dur}" --max_dur "${max_dur}") ;;
        valid) opts+=(--train) ;;
    esac
    for s in "$@"; do dirs+=("data/${s}"); done
    ${python} -m espnet_speechlm_plugin.bin.validate_data_dir "${dirs[@]}" "${opts[@]}"
    validated+="$* "
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation → data/"
    eval "local/data.sh ${local_data_opts}"
    # a training mix builds data/<train_set> and its valid set in stage 2, which validates them then
    if [ -z "${train_mix_stage1}${train_mix_stage2}" ]; then
        # shellcheck disable=SC2046
        validate train $(existing ${train_set})
    fi
    # shellcheck disable=SC2046,SC2086
    validate valid $(existing ${shared_valid})
    # shellcheck disable=SC2046,SC2086
    validate test $(existing ${test_sets})
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    log "Stage 2: features → dump/"
    mixes="${train_mix_stage1} ${train_mix_stage2}"
    if [ -n "${mixes// /}" ]; then
        # every valid and test clip is kept out of training: the mixes' valid dirs, the test sets and a shared
        # data/<valid_set> (make_mix reports what it removed, per source)
        exclude=()
        # shellcheck disable=SC2086
        for dset in $(unique ${test_sets}); do exclude+=("data/${dset}"); done
        # shellcheck disable=SC2046,SC2086
        for dset in $(existing ${shared_valid}); do exclude+=("data/${dset}"); done
        log "Combining the training mixes ${mixes} → data/${train_set} and the valid sets ${valid_sets}," \
            "without the clips of the valid and test sets (report: data/${train_set}/mix_report.txt)"
        # shellcheck disable=SC2086
        ${python} -m espnet_speechlm_plugin.bin.make_mix --mix ${mixes} --train_dir "data/${train_set}" \
            --valid_prefix "data/${valid_set}" --exclude_dirs "${exclude[@]}"
    fi
    # shellcheck disable=SC2046
    validate train $(pending ${train_set})
    # shellcheck disable=SC2046,SC2086
    validate valid $(pending ${valid_sets})
    # shellcheck disable=SC2046,SC2086
    validate test $(pending ${test_sets})
    # two jobs: the training set (with its duration filter), then the valid and test sets together
    run_cmd --nj "${nj}" "dump/log/featurize.${train_set}.log" ${python} -m espnet_speechlm_plugin.bin.featurize \
        --data_dir "data/${train_set}" --out_dir "dump/${train_set}" --nj "${nj}" --min_dur "${min_dur}" \
        --max_dur "${max_dur}"
    # shellcheck disable=SC2086
    eval_sets=$(unique ${valid_sets} ${test_sets} | grep -vx "${train_set}" || true)
    if [ -n "${eval_sets}" ]; then
        # shellcheck disable=SC2046,SC2086
        run_cmd --nj "${nj}" "dump/log/featurize.eval.log" ${python} -m espnet_speechlm_plugin.bin.featurize \
            --data_dir $(printf 'data/%s ' ${eval_sets}) --out_dir $(printf 'dump/%s ' ${eval_sets}) --nj "${nj}"
    fi
    if [ "${make_init}" = true ]; then
        if [ -f "${init_dir}/decoder/config.json" ]; then
            log "${init_dir} exists: keeping the initial models"
        else
            log "Making tiny initial models and the corpus tokenizer → ${init_dir}"
            # shellcheck disable=SC2086
            ${python} -m espnet_speechlm_plugin.bin.make_tiny_init --text "dump/${train_set}/text" \
                "dump/${train_set}/prompt" --out_dir "${init_dir}" ${seed:+--seed "${seed}"} ${init_args}
        fi
        # the two pretrainings are independent: run them side by side, one thread each
        pids=()
        if [ "${init_lm_steps}" -gt 0 ]; then
            log "Pretraining the tiny LM on the training text (${init_lm_steps} steps) → ${init_dir}/decoder"
            # shellcheck disable=SC2046
            ${python} -m espnet_speechlm_plugin.bin.pretrain_tiny --what lm --data_dir "dump/${train_set}" \
                --model_dir "${init_dir}/decoder" --steps "${init_lm_steps}" --nthreads "${nthreads}" \
                ${seed:+--seed "${seed}"} \
                --languages $(config_languages "${stage1_config}") &
            pids+=($!)
        fi
        if [ "${init_encoder_steps}" -gt 0 ]; then
            log "Pretraining the tiny encoder with CTC (${init_encoder_steps} steps) → ${init_dir}/encoder"
            ${python} -m espnet_speechlm_plugin.bin.pretrain_tiny --what encoder --data_dir "dump/${train_set}" \
                --model_dir "${init_dir}/encoder" --tokenizer "${init_dir}/tokenizer" \
                --compressor_layers "${init_compressor_layers}" --steps "${init_encoder_steps}" \
                --nthreads "${nthreads}" ${seed:+--seed "${seed}"} &
            pids+=($!)
        fi
        for pid in "${pids[@]}"; do wait "${pid}"; done
    fi
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ] && [ -n "${exp1}" ]; then
    log "Stage 3: stage-1 alignment (encoder + LM frozen) → ${exp1}"
    # shellcheck disable=SC2086
    train "${stage1_config}" "${exp1}" $(valid_opts "${valid_set1}") $(mix_opts "${train_mix_stage1}") ${stage1_args}
fi

if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: stage-2 instruction SFT → ${exp2}"
    init=()
    [ -n "${exp1}" ] && init=(--init_param "${exp1}/valid.loss.best.pth")
    # shellcheck disable=SC2086
    train "${stage2_config}" "${exp2}" "${init[@]}" $(valid_opts "${valid_set2}") $(mix_opts "${train_mix_stage2}") \
        ${stage2_args}
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
        decode=(${python} -m espnet_speechlm_plugin.bin.decode --config "${exp2}/config.yaml"
                --model_file "${exp2}/${inference_model}" --data_dir "dump/${dset}"
                --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" --nthreads "${nthreads}")
        if [ "${inference_nj}" -gt 1 ]; then
            # ESPnet's layout: logdir/keys.JOB.scp → logdir/output.JOB (log logdir/decode.JOB.log), then a merge;
            # each job gets whole batches of the one-job batching, so the merged text is the same as one job's
            logdir="${out}/logdir"
            # shellcheck disable=SC2086
            ${python} -m espnet_speechlm_plugin.bin.decode_shards split --data_dir "dump/${dset}" \
                --nj "${inference_nj}" --out_dir "${logdir}" ${decode_args}
            # shellcheck disable=SC2086
            run_cmd --gpu "$(( ngpu > 0 ? 1 : 0 ))" JOB=1:"${inference_nj}" "${logdir}/decode.JOB.log" "${decode[@]}" \
                --key_file "${logdir}/keys.JOB.scp" --out_dir "${logdir}/output.JOB" ${decode_args}
            ${python} -m espnet_speechlm_plugin.bin.decode_shards merge --logdir "${logdir}" --nj "${inference_nj}" \
                --out_dir "${out}"
        else
            # shellcheck disable=SC2086
            run_cmd --gpu "$(( ngpu > 0 ? 1 : 0 ))" "${out}/decode.log" "${decode[@]}" --out_dir "${out}" ${decode_args}
        fi
    done
    if [ "${diagnose_n}" -gt 0 ]; then
        for dset in ${test_sets}; do
            out="${decode_dir}/${dset}/diagnose"
            if [ -f "${out}/task_confusion.json" ]; then log "${out}/task_confusion.json exists: skipping"; continue; fi
            log "Stage 5: task-confusion diagnostic on ${diagnose_n} utterances of ${dset} → ${out}"
            # same decoding options and device as the decoding above
            # shellcheck disable=SC2086
            run_cmd --gpu "$(( ngpu > 0 ? 1 : 0 ))" "${out}/diagnose.log" \
                ${python} -m espnet_speechlm_plugin.bin.diagnose --diagnose_n "${diagnose_n}" \
                --config "${exp2}/config.yaml" --model_file "${exp2}/${inference_model}" --data_dir "dump/${dset}" \
                --out_dir "${out}" --device "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)" \
                --nthreads "${nthreads}" ${decode_args} ${diagnose_args}
        done
    fi
fi

if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
    log "Stage 6: scoring → ${exp2}/RESULTS.md"
    for dset in ${test_sets}; do
        if [ -f "dump/${dset}/mcif_ref" ]; then
            log "Stage 6: ${dset} came from MCIF references: ${exp2}/mcif/${dset}.xml is scored officially too"
        fi
    done
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
    if [ "${skip_upload_hf}" = true ]; then
        log "Stage 8: upload skipped (--skip_upload_hf true)"
    else
        [ -n "${hf_repo}" ] || { log "Stage 8: set --hf_repo user/name to upload"; exit 1; }
        log "Stage 8: uploading ${exp2}/packed to the HF hub repo '${hf_repo}' (dry run: ${dry_run})"
        ${python} -m espnet_speechlm_plugin.bin.pack --exp_dir "${exp2}" --model_file "${inference_model}" \
            --out "${exp2}/packed/model.zip" --hf_repo "${hf_repo}" --dry_run "${dry_run}" \
            --private "${hf_private}" --license "${hf_license}"
    fi
fi
log "Done (stages ${stage}..${stop_stage})"
