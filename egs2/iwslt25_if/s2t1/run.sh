#!/usr/bin/env bash
# iwslt25_if: the IWSLT 2025 instruction-following system of Instituto de Telecomunicações (arXiv 2506.17019):
# w2v-BERT 2.0 → length adapter (w2v-BERT's own, 4x; --model <name>_paper: the paper's 3×Conv1d + Conformer, 8x)
# → projector → Qwen2.5-0.5B/1.5B or Phi-4-mini,
# stage-1 alignment on ASR, stage-2 instruction SFT on ASR + ST + spoken QA (each stage validating on its own
# tasks), decoding and scoring where the paper's tasks are reported: ACL 60/60 dev (the IWSLT 2025 dev set; ASR,
# en→de, en→zh), LibriSpeech test-clean and test-other (ASR), CoVoST 2 test (en→de, en→zh), FLEURS test (en→it) and
# Spoken-SQuAD test (spoken QA: exact match, unanswerable accuracy, BERTScore). No clip of a valid or test set is
# trained on (stage 2 removes them and counts them in data/train/mix_report.txt).
# Edit db.sh (one path per corpus), then:
#   ./run.sh --stage 1 --stop_stage 5                       # data, features, both training stages, decoding
#   ./run.sh --model qwen2.5-1.5b --ngpu 2 --stage2_config conf/stage2_qwen2.5-1.5b_2gpu.yaml
#   ./run.sh --lora true --stage 4      # recipe stage 4 (the paper's stage 2) with LoRA on the decoder, same stage 3
#   ./run.sh --cmd_backend slurm --slurm_opts "--partition gpu --time 48:00:00"
#   ./run.sh --stage 1 --stop_stage 2 --corpora_root /tmp/fixture   # dry run on fixture corpora
#                                         # (python -m espnet_speechlm_plugin.bin.make_fixture_corpora /tmp/fixture)
#   ./run.sh --corpora_root /data         # find every corpus db.sh leaves empty under /data by its release name
#   ./run.sh --rehearsal true             # stages 1-7 with real-size random-weight models on CPU (docs/rehearsal.md)
# Options of this script come first in --help; every other option goes to speechlm.sh, listed after them with the
# values this script gives them (README.md in this folder).
set -euo pipefail

# ---- options of this script (--help lists them from here) ----
model=qwen2.5-0.5b    # the LM: qwen2.5-0.5b, qwen2.5-1.5b or phi-4-mini (picks conf/stage{1,2}_<model>.yaml)
lora=false            # true|false: stage 4 with LoRA on the decoder (conf/stage2_<model>_lora.yaml), same stage 3
pseudolabel=false     # true|false: stage 1 adds en->de/it/zh pseudo-labels of Common Voice English and stage 4
                      # trains on conf/train_mix_stage2_pl.yaml (docs/pseudolabel.md)
corpora="librispeech mls cv covost2 fleurs spokensquad acl6060"  # the corpora stage 1 prepares
corpora_root=""       # where local/data.sh looks for every corpus db.sh leaves empty (by its release folder name)
nj=8                  # processes for data prep and feature extraction
rehearsal=false       # true: stages 1-7 with real-size random-weight models on CPU (docs/rehearsal.md; options:
                      # local/rehearsal.py --help)
# ---- end of options ----

. utils/options.sh
parse_recipe_options "$0" "$@"  # sets the options above; the rest go to speechlm.sh
if [ "${rehearsal}" = true ] && [ "${help}" = false ]; then  # options: local/rehearsal.py --help
    exec local/rehearsal.sh ${corpora_root:+--corpora_root "${corpora_root}"} "${rest[@]}"
fi
[ -f "conf/stage1_${model}.yaml" ] || { echo "$0: --model ${model}: no conf/stage1_${model}.yaml" >&2; exit 1; }
stage2_config="conf/stage2_${model}.yaml"
tag="${model}"
if [ "${lora}" = true ]; then
    stage2_config="conf/stage2_${model}_lora.yaml"
    tag="${model}_lora"
fi

# decoded and scored in stages 5-6, and kept out of training in stage 2 (a set whose corpus is left out of
# --corpora is skipped)
test_sets=""
for dset in acl6060_en_dev acl6060_en_de_dev acl6060_en_zh_dev \
            librispeech_en_test-clean librispeech_en_test-other \
            covost2_en_de_test covost2_en_zh_test fleurs_en_it_test spokensquad_en_test; do
    if [[ " ${corpora} " == *" ${dset%%_*} "* ]]; then test_sets+="${test_sets:+ }${dset}"; fi
done

local_data_opts="--corpora $(printf %q "${corpora}") --nj ${nj}"
[ -n "${corpora_root}" ] && local_data_opts+=" --corpora_root $(printf %q "${corpora_root}")"
mix2=conf/train_mix_stage2.yaml
if [ "${pseudolabel}" = true ]; then
    local_data_opts+=" --pseudolabel true"
    mix2=conf/train_mix_stage2_pl.yaml
fi

./speechlm.sh \
    --local_data_opts "${local_data_opts}" \
    --train_mix_stage1 conf/train_mix_stage1.yaml \
    --train_mix_stage2 "${mix2}" \
    --train_set train --valid_set dev \
    --test_sets "${test_sets}" \
    --tag "${tag}" --stage1_tag "${model}" \
    --stage1_config "conf/stage1_${model}.yaml" \
    --stage2_config "${stage2_config}" \
    --ngpu 1 --nj "${nj}" \
    --decode_args "--batch_size 32 --max_new_tokens 256" \
    "${rest[@]}" "${help_opt[@]}"
