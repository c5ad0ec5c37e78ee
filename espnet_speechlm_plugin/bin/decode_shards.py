"""Sharded decoding (recipe stage 5 with ``--inference_nj N``): split a test set into N key files, merge N outputs.

    python -m espnet_speechlm_plugin.bin.decode_shards split --data_dir dump/test --nj 4 --out_dir LOGDIR \
        [decoding options, e.g. --batch_size 32]        → LOGDIR/keys.{1..4}.scp
    job J:  python -m espnet_speechlm_plugin.bin.decode … --key_file LOGDIR/keys.J.scp --out_dir LOGDIR/output.J
            (log LOGDIR/decode.J.log; the recipe runs them with cmd.sh's ``run_cmd JOB=1:4``)
    python -m espnet_speechlm_plugin.bin.decode_shards merge --logdir LOGDIR --nj 4 --out_dir exp/…/decode_x/test

Every job gets whole batches of the one-job batching, so the merged ``text`` is byte-identical to one job's
(``data/shards.py``). ``split`` takes the decoding options (the recipe's decode_args) and reads ``--batch_size``.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_speechlm_plugin.data.kaldi import KaldiFileError
from espnet_speechlm_plugin.data.shards import DEFAULT_BATCH_SIZE, ShardError, merge_outputs, split_keys


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("split", help="write OUT_DIR/keys.{1..N}.scp of whole decoding batches")
    s.add_argument("--data_dir", required=True, type=Path, help="the test set's dump dir (prompt, speech_shape)")
    s.add_argument("--nj", required=True, type=int)
    s.add_argument("--out_dir", required=True, type=Path)
    s.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="decoding's --batch_size")
    m = sub.add_parser("merge", help="merge LOGDIR/output.{1..N} into OUT_DIR")
    m.add_argument("--logdir", required=True, type=Path)
    m.add_argument("--nj", required=True, type=int)
    m.add_argument("--out_dir", required=True, type=Path)
    a, rest = p.parse_known_args(argv)
    if a.command == "merge" and rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if a.nj < 1:
        p.error(f"--nj must be >= 1, got {a.nj}")
    try:
        if a.command == "split":
            shards = split_keys(a.data_dir, a.nj, a.out_dir, a.batch_size)
            print(f"{a.data_dir}: {sum(map(len, shards))} utterances in {a.nj} key files "
                  f"({', '.join(str(len(k)) for k in shards)}) → {a.out_dir}/keys.*.scp")
        else:
            names = merge_outputs(a.logdir, a.nj, a.out_dir)
            print(f"merged {', '.join(names)} of {a.nj} decoding jobs → {a.out_dir}")
    except (ShardError, KaldiFileError, FileNotFoundError) as e:
        print(f"decode_shards: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
