"""Check a Kaldi data dir (end of recipe stage 1, start of stage 2) or a dump dir (before training).

    python -m espnet_speechlm_plugin.bin.validate_data_dir data/train --train [--min_dur 0.5 --max_dur 30] \
        [--languages en de it zh | --config conf/stage2.yaml] [--skip_audio]
    python -m espnet_speechlm_plugin.bin.validate_data_dir data/test1 data/test2    (several dirs, same options)

Prints one sentence per problem on stderr (file, line, utterance, what to do) and exits 1 if there is any; on
stdout a summary with what stage 2 will fix or filter, counted: audio at other sample rates (resampled),
multi-channel audio (downmixed), audio outside --min_dur/--max_dur and decoded silence (dropped).
See ``espnet_speechlm_plugin/data/validate.py`` for the full list of checks.
"""

from __future__ import annotations

import argparse
import os
import sys

from espnet_speechlm_plugin.data.validate import validate_data_dir
from espnet_speechlm_plugin.vocab import DEFAULT_LANGUAGES, config_languages


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="+",
                        help="data/<set> (wav.scp, prompt, text, …) or dump/<set> (feats.scp, …); several are "
                             "checked one after the other, and the exit status is 1 if any has a problem")
    parser.add_argument("--train", action="store_true",
                        help="a training set: `text` is required and every target must be non-empty")
    parser.add_argument("--min_dur", type=float, default=0.0,
                        help="count utterances shorter than this (seconds) as dropped in stage 2 (default 0: none)")
    parser.add_argument("--max_dur", type=float, default=0.0,
                        help="count utterances longer than this (seconds) as dropped in stage 2 (default 0: none)")
    parser.add_argument("--languages", nargs="+", default=None,
                        help=f"output languages the prompts may use (default: {' '.join(DEFAULT_LANGUAGES)})")
    parser.add_argument("--config", default=None,
                        help="take --languages from this training config's `languages:` instead")
    parser.add_argument("--skip_audio", action="store_true",
                        help="do not open the audio (text files only); pipes are otherwise run once each")
    return parser


def languages_from(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.languages) if args.languages else config_languages(args.config)


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.config and not args.languages and not os.path.isfile(args.config):
        parser.error(f"--config {args.config} does not exist (it is read for `languages:`); fix the path")
    ok = True
    for data_dir in args.data_dir:
        report = validate_data_dir(data_dir, train=args.train, min_dur=args.min_dur, max_dur=args.max_dur,
                                   languages=languages_from(args), audio=not args.skip_audio, progress=True)
        for warning in report.warnings:
            print(f"validate_data_dir: warning: {warning}", file=sys.stderr)
        for error in report.errors:
            print(f"validate_data_dir: error: {error}", file=sys.stderr)
        print(f"validate_data_dir: {report.summary()}", flush=True)
        ok = ok and report.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
