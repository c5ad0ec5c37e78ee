#!/usr/bin/env bash
# Stage 1 of mini_espeak: synthesise the en/de/it/zh corpus with espeak-ng
#   → data/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt,prompt,transcript}, data/corpus_stats.json,
#     wavs in downloads/wav/.
# Run from the recipe directory. Every option of local/make_mini_corpus.py can be given, e.g.
#   local/data.sh --n_train 2400 --n_dev 100 --n_test 200 --seed 1 --nj 2
# (sizes count utterances; `python3 local/make_mini_corpus.py --help` lists the task-mix flags).
# A complete corpus made with the same options is left alone; other options rebuild it.
set -euo pipefail

recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

python3 "${recipe_dir}/local/make_mini_corpus.py" \
    --out data --wav_dir downloads/wav --grammar "${recipe_dir}/conf/grammar.yaml" "$@"
