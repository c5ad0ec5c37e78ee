"""Stage 1 of egs2/iwslt25_if/s2t1: read the corpora named in --corpora and write one Kaldi data dir per
(corpus, language or pair, split) under --out. The recipe's ``local/data.sh`` calls this with the paths from db.sh.

    python -m espnet_speechlm_plugin.corpora.prepare --out data --work_dir downloads --nj 4 \\
        --corpora "librispeech mls cv covost2 fleurs spokensquad acl6060" \\
        --librispeech /data/LibriSpeech --mls_de /data/mls_german --mls_it /data/mls_italian \\
        --commonvoice /data/cv-corpus-17.0 --covost2 /data/covost2 --covost2_cv_en /data/cv-corpus-4/en \\
        --fleurs /data/fleurs --spoken_squad /data/Spoken-SQuAD --acl6060 /data/acl6060

With ``--corpora_root DIR`` every corpus path not given is looked for under DIR by the folder name its release
unpacks to (``LibriSpeech``, ``mls_german_opus``, ``cv-corpus-17.0-2024-03-15``, ...; see locate.py): exactly
one candidate is used, none or several stop with a message listing what was looked at.
Every requested corpus's layout is checked first, before anything is read or written: a missing or wrong path
stops with one message per corpus naming the db.sh variable and the expected layout (exit status 2).
Data dirs that are complete with the same source and options are skipped; others are (re)written atomically.
``--check_only`` checks the layouts and lists the data dirs that would be written. Reader modules, one per
corpus, document their layouts and data dir names: librispeech.py, mls.py, common_voice.py, covost2.py,
fleurs.py, spoken_squad.py, acl6060.py (all in espnet_speechlm_plugin/corpora/).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from espnet_speechlm_plugin.corpora import (
    acl6060, common_voice, covost2, fleurs, librispeech, mls, spoken_squad,
)
from espnet_speechlm_plugin.corpora.common import CorpusError, Plan, log, prepare_dir
from espnet_speechlm_plugin.corpora.locate import NEEDS, locate
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES

CORPORA = ("librispeech", "mls", "cv", "covost2", "fleurs", "spokensquad", "acl6060")
# db.sh variable -> option of this script
OPTION_OF = {"LIBRISPEECH": "librispeech", "MLS_DE": "mls_de", "MLS_IT": "mls_it", "COMMONVOICE": "commonvoice",
             "COVOST2": "covost2", "COVOST2_CV_EN": "covost2_cv_en", "FLEURS": "fleurs",
             "SPOKEN_SQUAD": "spoken_squad", "ACL6060": "acl6060"}


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", default=" ".join(CORPORA),
                   help=f"space-separated corpora to prepare, from: {' '.join(CORPORA)} (default: all)")
    p.add_argument("--out", default="data", help="where the data dirs go (default: data)")
    p.add_argument("--work_dir", default="downloads",
                   help="where extracted FLEURS archives and concatenated Spoken-SQuAD passages go")
    p.add_argument("--nj", type=int, default=1, help="parallel processes for reading audio headers etc.")
    p.add_argument("--check_only", action="store_true", help="check the layouts, list the data dirs, write nothing")
    paths = p.add_argument_group("corpus locations (the db.sh variables)")
    for var, name in OPTION_OF.items():
        paths.add_argument(f"--{name}", default="", metavar="DIR", help=f"${var}")
    paths.add_argument("--corpora_root", default="", metavar="DIR",
                       help="look for every corpus not given above under DIR by its release folder name")
    opts = p.add_argument_group("what to prepare")
    opts.add_argument("--mls_langs", default="de it", help="MLS languages (de it)")
    opts.add_argument("--cv_langs", default=" ".join(DEFAULT_LANGUAGES),
                      help=f"Common Voice languages ({' '.join(DEFAULT_LANGUAGES)})")
    opts.add_argument("--cv_train", default="validated", choices=("validated", "train"),
                      help="Common Voice training clips: validated.tsv minus dev/test (default) or train.tsv")
    opts.add_argument("--covost2_targets", default="de zh", help="CoVoST 2 en→X targets (de zh)")
    opts.add_argument("--fleurs_langs", default=" ".join(DEFAULT_LANGUAGES),
                      help=f"FLEURS languages ({' '.join(DEFAULT_LANGUAGES)})")
    opts.add_argument("--fleurs_translate", type=_bool, default=True,
                      help="also write fleurs_en_<tgt>_* translation dirs (true)")
    opts.add_argument("--sqa_unanswerable_ratio", type=float, default=0.25,
                      help="unanswerable examples added per answerable one in Spoken-SQuAD dirs (0.25)")
    opts.add_argument("--sqa_dev_fraction", type=float, default=spoken_squad.DEV_FRACTION,
                      help="share of Spoken-SQuAD training articles held out as spokensquad_<lang>_dev "
                           f"(at least {spoken_squad.MIN_DEV_ARTICLES}; 0: none) (default %(default)s)")
    opts.add_argument("--sqa_translations", default="",
                      help="folder of <lang>.tsv (id, question, answer) for de/it/zh SQA; none: English only")
    opts.add_argument("--acl6060_targets", default="de zh", help="ACL 60/60 translation targets (de zh)")
    opts.add_argument("--seed", type=int, default=1, help="seed of the unanswerable pairings")
    return p


def find_under_root(args, wanted: list[str]) -> dict[str, str]:
    """Fill the corpus paths not given from --corpora_root (see locate.py); returns {variable: error}."""
    if not args.covost2_cv_en and args.commonvoice:
        args.covost2_cv_en = str(Path(args.commonvoice) / "en")  # as db.sh does
    if not args.corpora_root:
        return {}
    if not Path(args.corpora_root).is_dir():
        return {"": f"--corpora_root {args.corpora_root}: no such directory"}
    mls_vars = {f"MLS_{lang.upper()}" for lang in args.mls_langs.split()}
    errors = {}
    for var in dict.fromkeys(v for c in wanted for v in NEEDS[c] if not v.startswith("MLS_") or v in mls_vars):
        option = OPTION_OF[var]
        if getattr(args, option):
            continue
        try:
            setattr(args, option, locate(var, args.corpora_root))
            log(f"--corpora_root: {var}={getattr(args, option)}")
        except CorpusError as err:
            errors[var] = str(err)
    return errors


def collect_plans(args) -> tuple[list[Plan], list[str]]:
    """Plans of every requested corpus, and the layout errors (all of them, not just the first)."""
    wanted = args.corpora.split()
    unknown = [c for c in wanted if c not in CORPORA]
    if unknown:
        return [], [f"unknown corpus {', '.join(unknown)} in --corpora; choose from: {' '.join(CORPORA)}"]
    not_found = find_under_root(args, wanted)
    if "" in not_found:
        return [], list(not_found.values())
    builders = {
        "librispeech": lambda: librispeech.plans(args.librispeech),
        "mls": lambda: mls.plans({"de": args.mls_de, "it": args.mls_it}, langs=args.mls_langs.split()),
        "cv": lambda: common_voice.plans(args.commonvoice, langs=args.cv_langs.split(), train_from=args.cv_train),
        "covost2": lambda: covost2.plans(args.covost2, args.covost2_cv_en, targets=args.covost2_targets.split()),
        "fleurs": lambda: fleurs.plans(args.fleurs, args.work_dir, langs=args.fleurs_langs.split(),
                                       translate=args.fleurs_translate),
        "spokensquad": lambda: spoken_squad.plans(args.spoken_squad, args.work_dir,
                                                  unanswerable_ratio=args.sqa_unanswerable_ratio, seed=args.seed,
                                                  translations_dir=args.sqa_translations or None, nj=args.nj,
                                                  dev_fraction=args.sqa_dev_fraction),
        "acl6060": lambda: acl6060.plans(args.acl6060, targets=args.acl6060_targets.split()),
    }
    plans, errors = [], []
    for corpus in wanted:
        if any(var in not_found for var in NEEDS[corpus]):
            continue  # its path is unknown: the --corpora_root message says why
        try:
            plans += builders[corpus]()
        except (CorpusError, OSError) as err:
            errors.append(str(err))
    return plans, list(not_found.values()) + errors


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    plans, errors = collect_plans(args)
    if errors:
        for err in errors:
            print(f"ERROR: {err}\n", file=sys.stderr)
        return 2
    if args.check_only:
        for plan in plans:
            print(plan.name)
        return 0
    start = time.time()
    for plan in plans:
        try:
            log(prepare_dir(Path(args.out), plan, args.nj))
        except CorpusError as err:
            print(f"ERROR: {plan.name}: {err}", file=sys.stderr)
            return 1
    log(f"{len(plans)} data dirs under {args.out}/ in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
