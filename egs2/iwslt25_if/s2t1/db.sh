# Corpus locations for egs2/iwslt25_if/s2t1 (sourced by local/data.sh). Edit the paths after the ":-" to where
# each corpus is unpacked, or export the variable before running. A corpus you do not prepare (leave it out of
# --corpora) needs no path. The expected layout of each is in espnet_speechlm_plugin/corpora/<reader>.py and
# docs/iwslt_recipe.md.
#
# With `--corpora_root DIR` (local/data.sh and run.sh option) every variable left empty here is looked for under
# DIR by the folder name its release unpacks to (espnet_speechlm_plugin/corpora/locate.py); exactly one candidate
# must match, else the run stops listing what it looked at or the candidates, and you set that variable here:
#
#   variable        what                                         found under --corpora_root as
#   LIBRISPEECH     LibriSpeech/ (train-*/, dev-clean/, test-clean/, test-other/)          LibriSpeech
#   MLS_DE, MLS_IT  Multilingual LibriSpeech, flac or opus release   mls_german or mls_german_opus (italian: same)
#   COMMONVOICE     a Common Voice release (en/, de/, it/, zh-CN/)   cv-corpus-* (e.g. cv-corpus-17.0-2024-03-15)
#   COVOST2         the folder holding covost_v2.en_de.tsv, covost_v2.en_zh-CN.tsv (or the split tsvs)
#                                                                    any folder holding them, up to two levels down
#   COVOST2_CV_EN   Common Voice English with CoVoST 2's clips       $COMMONVOICE/en; with several releases,
#                                                                    cv-corpus-4-2019-12-10/en (CoVoST 2's release)
#   FLEURS          google/fleurs (data/en_us/, ...)                 fleurs or datasets--google--fleurs/snapshots/*
#   SPOKEN_SQUAD    Spoken-SQuAD json + Spoken-SQuAD_audio/          Spoken-SQuAD* (a clone of the repository)
#   ACL6060         unpacked 2023.iwslt-1.2.dataset.zip              2/acl_6060 (also */2/acl_6060, acl_6060)

LIBRISPEECH="${LIBRISPEECH:-}"      # e.g. /data/LibriSpeech
MLS_DE="${MLS_DE:-}"                # e.g. /data/mls_german_opus
MLS_IT="${MLS_IT:-}"                # e.g. /data/mls_italian_opus
COMMONVOICE="${COMMONVOICE:-}"      # e.g. /data/cv-corpus-17.0-2024-03-15
COVOST2="${COVOST2:-}"              # e.g. /data/covost2
COVOST2_CV_EN="${COVOST2_CV_EN:-${COMMONVOICE:+${COMMONVOICE}/en}}"  # e.g. /data/cv-corpus-4-2019-12-10/en
FLEURS="${FLEURS:-}"                # e.g. /data/fleurs
SPOKEN_SQUAD="${SPOKEN_SQUAD:-}"    # e.g. /data/Spoken-SQuAD
ACL6060="${ACL6060:-}"              # e.g. /data/2/acl_6060
