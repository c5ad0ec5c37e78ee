"""Recipe stage 6: score decoded test sets and write RESULTS.md + results.json (+ MCIF submission XML); or score
MCIF output files against MCIF reference files exactly as the official evaluation does.

    python -m espnet_speechlm_plugin.bin.score --decode_dir exp/x/decode_test --ref_dir dump \
        --test_sets "test dev" --out_dir exp/x [--model_tag NAME] [--config exp/x/config.yaml] \
        [--comet_model /models/wmt22-comet-da] [--bertscore_model en=/models/roberta-large ...]
    python -m espnet_speechlm_plugin.bin.score --ref_xml MCIF1.2.IF.short.de.ref.xml --hyp_xml output.xml \
        [--track short|long] [--lang de ...] [--out_dir DIR] [--comet_model ...] [--bertscore_model ...]

First form (per-utterance scoring, `scoring.report`): reads `<decode_dir>/<set>/text` (stage 5) and
`<ref_dir>/<set>/{text,prompt[,transcript,mcif_id,mcif_ref]}`; prints RESULTS.md and writes it with results.json into
--out_dir, and the hypotheses as one MCIF output file per test set into <out_dir>/mcif/. A test set with `mcif_ref`
(the MCIF reference files it came from) is also scored with the official evaluation. `--hyp_xml` without
`--ref_xml` scores output files against a data dir instead of the decode dir.
Second form (`scoring.official`): every (track, language) task of the reference files, scored with the output
files as the official `mcif_eval -t TRACK -l LANG -s OUTPUT -r REFERENCE` scores it; prints the scores (and writes
RESULTS.md + results.json with --out_dir).
A metric whose model is not available offline is reported as "not computed: <why, how to fix>".
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from espnet_speechlm_plugin.data.kaldi import KaldiFileError, write_atomic
from espnet_speechlm_plugin.scoring import official
from espnet_speechlm_plugin.scoring.bertscore import BertScoreOptions, per_language
from espnet_speechlm_plugin.scoring.comet import DEFAULT_MODEL, CometOptions
from espnet_speechlm_plugin.scoring.mcif import McifError
from espnet_speechlm_plugin.scoring.report import ScoringError, ScoringOptions, run_scoring


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decode_dir", help="holds <test_set>/text with `utt hypothesis` lines")
    parser.add_argument("--ref_dir", help="holds <test_set>/{text,prompt[,transcript,mcif_id,mcif_ref]}")
    parser.add_argument("--test_sets", nargs="+", help='test set names, space-separated ("test dev" or test dev)')
    parser.add_argument("--out_dir", help="where RESULTS.md and results.json are written (needed unless --ref_xml)")
    parser.add_argument("--model_tag", default=None, help="model name in the header (default: out_dir's name)")
    parser.add_argument("--config", default=None, help="training config path, recorded in the header")

    g = parser.add_argument_group("COMET (translate)")
    g.add_argument("--comet_model", default=DEFAULT_MODEL,
                   help="hub name (local HF cache only), model folder with checkpoints/model.ckpt, or the .ckpt "
                        "file; 'none' turns COMET off (default: %(default)s)")
    g.add_argument("--comet_batch_size", type=int, default=8, help="default %(default)s, as the official scorer")
    g.add_argument("--comet_gpus", type=int, default=None, help="default: 1 if CUDA is available, else 0")

    g = parser.add_argument_group("BERTScore (answer); each value is VALUE (all languages) or LANG=VALUE")
    g.add_argument("--bertscore_model", nargs="+", default=None,
                   help="hub name (local HF cache only) or folder; default: bert_score's model for the language "
                        "(en roberta-large, zh bert-base-chinese, others bert-base-multilingual-cased); "
                        "'none' turns BERTScore off")
    g.add_argument("--bertscore_num_layers", nargs="+", default=None,
                   help="layer to use; needed for a folder not named after a model in bert_score's table")
    g.add_argument("--bertscore_baseline", nargs="+", default=None,
                   help="rescale baseline file (LAYER,P,R,F); needed when bert_score ships none for the model")
    g.add_argument("--bertscore_batch_size", type=int, default=64)

    g = parser.add_argument_group("MCIF XML")
    g.add_argument("--mcif_track", default="short", choices=["short", "long", "none"],
                   help="track attribute of the exported XML (a test set with mcif_ref takes its references' "
                        "track); 'none' writes no XML and runs no official evaluation (default: %(default)s)")
    g.add_argument("--hyp_xml", nargs="+", type=Path, default=None,
                   help="MCIF output files (any number of <task>s each): with --ref_xml, the output to score "
                        "officially; without, scored instead of <decode_dir>/<set>/text (one test set only)")
    g.add_argument("--ref_xml", nargs="+", type=Path, default=None,
                   help="MCIF reference files: score --hyp_xml with the official evaluation")
    g.add_argument("--track", choices=["short", "long"], default=None,
                   help="only tasks of this track (default: every track of the files)")
    g.add_argument("--lang", nargs="+", default=None, help="with --ref_xml: only these languages (default: all)")
    g.add_argument("--filter_modality", choices=["audio", "text", "video"], default=None,
                   help="with --ref_xml: only reference samples with this modality (the official --filter-modality)")
    g.add_argument("--breakdown_qa_types", action="store_true",
                   help="with --ref_xml: also QA-BERTScore per qa_type and qa_origin (the official option)")
    return parser


def options_from_args(args: argparse.Namespace) -> ScoringOptions:
    comet = None if args.comet_model.lower() == "none" else CometOptions(
        args.comet_model, batch_size=args.comet_batch_size, gpus=args.comet_gpus)
    if args.bertscore_model and [m.lower() for m in args.bertscore_model] == ["none"]:
        bertscore = None
    else:
        bertscore = BertScoreOptions(
            models=per_language(args.bertscore_model, "--bertscore_model"),
            num_layers=per_language(args.bertscore_num_layers, "--bertscore_num_layers"),
            baselines=per_language(args.bertscore_baseline, "--bertscore_baseline"),
            batch_size=args.bertscore_batch_size,
        )
    return ScoringOptions(comet=comet, bertscore=bertscore,
                          mcif_track=None if args.mcif_track == "none" else args.mcif_track,
                          hyp_xml=list(args.hyp_xml or []), hyp_track=args.track)


def run_official(args: argparse.Namespace, options: ScoringOptions) -> str:
    """The second form: official scores of --hyp_xml against --ref_xml."""
    if not args.hyp_xml:
        raise McifError("--ref_xml needs --hyp_xml (the output files to score)")
    results = official.run(args.ref_xml, args.hyp_xml, tracks=[args.track] if args.track else None,
                           langs=args.lang, comet=options.comet, bertscore=options.bertscore,
                           modality=args.filter_modality, breakdown_qa_types=args.breakdown_qa_types)
    markdown = official.results_markdown(results, date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    if args.out_dir:
        rows = [json.dumps(row, ensure_ascii=False) for row in official.rows(results, "mcif")]
        write_atomic(Path(args.out_dir) / "results.json", "[\n" + ",\n".join(rows) + "\n]\n")
        write_atomic(Path(args.out_dir) / "RESULTS.md", markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.ref_xml:
        missing = [f"--{name}" for name in ("decode_dir", "ref_dir", "test_sets", "out_dir")
                   if getattr(args, name) is None and not (name == "decode_dir" and args.hyp_xml)]
        if missing:
            parser.error(f"the following arguments are required without --ref_xml: {', '.join(missing)}")
    try:
        options = options_from_args(args)
        if args.ref_xml:
            print(run_official(args, options))
            return 0
        # Recipes pass --test_sets "test dev" as one word; accept both that and separate words.
        test_sets = [name for value in args.test_sets for name in value.split()]
        markdown = run_scoring(
            args.decode_dir or "", args.ref_dir, test_sets, args.out_dir, model_tag=args.model_tag,
            config=args.config, options=options,
        )
    except (ScoringError, KaldiFileError, McifError, ValueError) as e:
        print(f"score: error: {e}", file=sys.stderr)
        return 1
    print(markdown)
    print(f"score: wrote {args.out_dir}/RESULTS.md and {args.out_dir}/results.json"
          + (f" and MCIF XML in {args.out_dir}/mcif/" if options.mcif_track and not options.hyp_xml else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
