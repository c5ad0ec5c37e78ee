"""Decode audio files with a trained SpeechLM: transcribe, translate or answer a question about each file.

    python -m espnet_speechlm_plugin.bin.speechlm_inference --model exp/tiny_stage2/packed/model.zip \
        --task translate --lang de talk.wav [more.wav ...]
    python -m espnet_speechlm_plugin.bin.speechlm_inference --model user/name --task answer --lang en \
        --question "What colour is the cat?" --out answers.tsv talk.wav

``--model``: a packed zip (stage 7), its unpacked folder, an experiment dir (config.yaml + .pth) or a hub repo
(downloaded through espnet_model_zoo). Files may have any sample rate and channel count (resampled to 16 kHz mono;
logged). Files longer than ``--max_seconds`` are cut in pauses; transcriptions and translations are decoded piece by
piece and stitched (``--segments FILE`` writes the pieces' times and texts), a question is asked once of all the
pieces' audio joined. Prints ``file<TAB>hypothesis`` per file, in the order given, or writes them to ``--out``
(atomically). Decoding options are stage 5's (``--beam_size 4 --length_penalty 1.0`` for beam search, etc.).
"""

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional

from espnet_speechlm_plugin.data.kaldi import write_atomic
from espnet_speechlm_plugin.features.segment import SegmentConfig
from espnet_speechlm_plugin.decoding import add_decode_arguments, generate_config
from espnet_speechlm_plugin.vocab import TASKS


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="packed zip, unpacked folder, experiment dir or hub repo name")
    p.add_argument("--model_file", default=None,
                   help="weights inside --model to use (default: the packed ones, or valid.acc.best.pth of an exp dir)")
    p.add_argument("--task", default="transcribe", choices=TASKS)
    p.add_argument("--lang", default="en", help="language of the OUTPUT (one of the model's --languages)")
    p.add_argument("--question", default=None, help="the question, for --task answer")
    p.add_argument("--out", type=Path, default=None, help="write 'file<TAB>hypothesis' lines here instead of stdout")
    p.add_argument("--segments", type=Path, default=None,
                   help="write 'file<TAB>start<TAB>end<TAB>text' per decoded piece (seconds) here")
    p.add_argument("--max_seconds", type=float, default=None,
                   help="longer files are segmented in pauses and stitched (default: 1.5 x the model's longest "
                        f"training utterance, else {SegmentConfig.max_seconds:g})")
    p.add_argument("--min_seconds", type=float, default=None,
                   help="pieces are cut at the first clear pause after this (default: the 5th percentile of the "
                        "model's training utterances, else max_seconds / 6)")
    p.add_argument("--pad", type=float, default=SegmentConfig.pad,
                   help="seconds of silence kept around each piece's speech")
    p.add_argument("--cachedir", default=None, help="where zips are unpacked and hub repos downloaded")
    p.add_argument("wavs", nargs="+", help="audio files (anything libsndfile reads)")
    return add_decode_arguments(p, batch_size=8)


def main(argv: Optional[List[str]] = None) -> None:
    p = get_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    from espnet_speechlm_plugin.zoo.inference import SpeechLMInference

    try:
        generate = generate_config(a)
    except ValueError as e:
        p.error(str(e))
    torch.set_num_threads(a.nthreads)
    missing = [w for w in a.wavs if not Path(w).is_file()]
    if missing:
        raise SystemExit(f"audio file(s) not found: {', '.join(missing)}")
    m = SpeechLMInference.from_pretrained(a.model, a.model_file, device=a.device, cachedir=a.cachedir,
                                          max_seconds=a.max_seconds, min_seconds=a.min_seconds, pad=a.pad,
                                          batch_size=a.batch_size,
                                          generate=generate)
    try:
        m.prompt(a.task, a.lang, a.question)  # a bad --lang or a missing --question fails before any decoding
    except ValueError as e:
        raise SystemExit(str(e))
    t0 = time.time()
    outs = m.decode(a.wavs, a.task, a.lang, a.question, progress=True)
    seconds = sum(o.duration for o in outs)
    logging.info(f"decoded {len(outs)} file(s), {seconds:.1f} s of audio, in {time.time() - t0:.1f} s")
    lines = "".join(f"{w}\t{o.text}\n" for w, o in zip(a.wavs, outs))
    if a.out:
        write_atomic(a.out, lines)
        logging.info(f"wrote {a.out}")
    else:
        print(lines, end="")
    if a.segments:
        write_atomic(a.segments, "".join(f"{w}\t{s.start:.2f}\t{s.end:.2f}\t{s.text}\n"
                                         for w, o in zip(a.wavs, outs) for s in o.segments))


if __name__ == "__main__":
    main()
