#!/usr/bin/env bash
# Stage 1 of iwslt25_if: the corpora in db.sh → Kaldi data dirs data/<corpus>_<lang-or-pair>_<split>/ with wav.scp,
# text, utt2spk, spk2utt, prompt (utt lang task [question]), utt2dur, transcript and prep_info.json.
# Run from the recipe directory. Options (each --name value):
#   --corpora "librispeech mls cv covost2 fleurs spokensquad acl6060"   which corpora to prepare (default: all)
#   --corpora_root DIR      find every corpus db.sh leaves empty under DIR by its release folder name (LibriSpeech/,
#                           mls_german_opus/, cv-corpus-17.0-2024-03-15/, ...; see db.sh), e.g. fixture corpora
#                           from python -m espnet_speechlm_plugin.bin.make_fixture_corpora DIR
#   --nj N                  parallel processes for reading audio headers and building passage audio (4)
#   --cv_train validated|train        Common Voice training clips: validated minus dev/test, or train.tsv
#   --sqa_unanswerable_ratio R        unanswerable Spoken-SQuAD examples per answerable one (0.25)
#   --sqa_dev_fraction F    share of Spoken-SQuAD training articles held out as spokensquad_<lang>_dev (0.02)
#   --sqa_translations DIR            <lang>.tsv (id, question, answer) for de/it/zh questions (none: English only)
#   --pseudolabel true      also translate data/cv_en_train into de/it/zh with the MT ensemble + COMETKiwi filter
#                           → data/cv_en_train_pl (README "Pseudo-labelling"); with --pl_mt_models FILE,
#                           --pl_qe_model NAME|PATH, --pl_threshold X, --pl_tgt_langs de,it,zh, --pl_args "..."
#                           --nj N runs N shards as jobs through cmd.sh (slurm: one srun each, --pl_gpu GPUs per job)
#   --extra_args "..."      any further option of the corpus readers
#                           (python -m espnet_speechlm_plugin.corpora.prepare --help)
# A missing or wrong corpus path stops before anything is written, naming the db.sh variable and the layout.
# Data dirs that are complete with the same sources and options are skipped.
set -euo pipefail

recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MAIN_ROOT="${MAIN_ROOT:-$(cd "${recipe_dir}/../../.." && pwd)}"

corpora="librispeech mls cv covost2 fleurs spokensquad acl6060"
corpora_root=""
nj=4
cv_train=validated
sqa_unanswerable_ratio=0.25
sqa_dev_fraction=0.02
sqa_translations=""
extra_args=""
pseudolabel=false
pl_mt_models="${MAIN_ROOT}/conf/pseudolabel/mt_models.yaml"
pl_qe_model=Unbabel/wmt22-cometkiwi-da
pl_threshold=0.85
pl_tgt_langs=de,it,zh
pl_args=""
pl_gpu=1

. "${MAIN_ROOT}/egs2/TEMPLATE/s2t1/utils/parse_options.sh"
if [ $# -gt 0 ]; then
    echo "$0: unexpected argument '$1' (options are --name value; see $0 --help)" >&2
    exit 1
fi
. "${recipe_dir}/db.sh"
. "${recipe_dir}/cmd.sh"

python=python3
[ -x "${MAIN_ROOT}/.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ] && python="${MAIN_ROOT}/.venv/bin/python"

# shellcheck disable=SC2086
"${python}" -m espnet_speechlm_plugin.corpora.prepare \
    --out data --work_dir downloads --nj "${nj}" --corpora "${corpora}" \
    --librispeech "${LIBRISPEECH}" --mls_de "${MLS_DE}" --mls_it "${MLS_IT}" \
    --commonvoice "${COMMONVOICE}" --covost2 "${COVOST2}" --covost2_cv_en "${COVOST2_CV_EN}" \
    --fleurs "${FLEURS}" --spoken_squad "${SPOKEN_SQUAD}" --acl6060 "${ACL6060}" \
    --corpora_root "${corpora_root}" --cv_train "${cv_train}" \
    --sqa_unanswerable_ratio "${sqa_unanswerable_ratio}" --sqa_dev_fraction "${sqa_dev_fraction}" \
    --sqa_translations "${sqa_translations}" ${extra_args}

if [ "${pseudolabel}" = true ]; then
    [ -f data/cv_en_train/text ] || { echo "$0: --pseudolabel true needs data/cv_en_train (add cv to --corpora)" >&2; exit 1; }
    # resumable and a no-op when done: scores and hypotheses are cached per (segment, model) in the work dir
    pl=("${python}" -m espnet_speechlm_plugin.bin.pseudolabel --data data/cv_en_train --tgt_langs "${pl_tgt_langs}"
        --mt_models "${pl_mt_models}" --qe_model "${pl_qe_model}" --threshold "${pl_threshold}"
        --out data/cv_en_train_pl --work_dir exp/pseudolabel/cv_en_train --nj "${nj}")
    if [ "${nj}" -gt 1 ]; then  # shard JOB of nj fills the cache (cmd.sh: local processes or slurm jobs) ...
        # shellcheck disable=SC2086
        run_cmd --gpu "${pl_gpu}" JOB=1:"${nj}" exp/pseudolabel/cv_en_train/log/pseudolabel.JOB.log "${pl[@]}" \
            --job JOB ${pl_args}
    fi
    # shellcheck disable=SC2086
    "${pl[@]}" ${pl_args}  # ... and this run merges the shards (with nj 1 it does all the work itself)
fi
