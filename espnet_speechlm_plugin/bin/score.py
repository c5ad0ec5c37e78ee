"""Recipe stage 6: score decoded test sets and write RESULTS.md + results.json.

    python -m espnet_speechlm_plugin.bin.score --decode_dir exp/x/decode_test --ref_dir dump \
        --test_sets "test dev" --out_dir exp/x [--model_tag NAME] [--config exp/x/config.yaml]

Reads `<decode_dir>/<set>/text` (stage 5) and `<ref_dir>/<set>/{text,prompt[,transcript]}`; prints RESULTS.md.
The work is in `espnet_speechlm_plugin.scoring.report`.
"""
from __future__ import annotations

import argparse
import sys

from espnet_speechlm_plugin.data.kaldi import KaldiFileError
from espnet_speechlm_plugin.scoring.report import ScoringError, run_scoring


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode_dir", required=True, help="holds <test_set>/text with `utt hypothesis` lines")
    parser.add_argument("--ref_dir", required=True, help="holds <test_set>/{text,prompt[,transcript]}")
    parser.add_argument(
        "--test_sets", required=True, nargs="+", help='test set names, space-separated ("test dev" or test dev)'
    )
    parser.add_argument("--out_dir", required=True, help="where RESULTS.md and results.json are written")
    parser.add_argument("--model_tag", default=None, help="model name in the header (default: out_dir's name)")
    parser.add_argument("--config", default=None, help="training config path, recorded in the header")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    # Recipes pass --test_sets "test dev" as one word; accept both that and separate words.
    test_sets = [name for value in args.test_sets for name in value.split()]
    try:
        markdown = run_scoring(
            args.decode_dir, args.ref_dir, test_sets, args.out_dir, model_tag=args.model_tag, config=args.config
        )
    except (ScoringError, KaldiFileError) as e:
        print(f"score: error: {e}", file=sys.stderr)
        return 1
    print(markdown)
    print(f"score: wrote {args.out_dir}/RESULTS.md and {args.out_dir}/results.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
