"""Task-confusion diagnostic (recipe stage 5, `--diagnose_n N`): decode the same audio with every task prompt.

    python -m espnet_speechlm_plugin.bin.diagnose --config exp/x_stage2/config.yaml \
        --model_file exp/x_stage2/valid.acc.best.pth --data_dir dump/test \
        --out_dir exp/x_stage2/decode_valid.acc.best/test/diagnose --diagnose_n 200

Picks N utterances of the test set (seeded), decodes each with its source language's `transcribe` prompt, a
`translate` prompt per other model language, and its own `answer` prompt if it has one, and labels what every
output did (transcribed, translated into which language, answered, echoed the question, other). Writes
`<out_dir>/task_confusion.json` (one record per utterance and prompt) and `<out_dir>/task_confusion.md` (the
asked x performed matrix); stage 6 (`bin/score.py`) puts the matrix into RESULTS.md. Details:
`espnet_speechlm_plugin.scoring.diagnostic`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_speechlm_plugin.data.kaldi import KaldiFileError, read_kaldi_text, write_atomic
from espnet_speechlm_plugin.scoring import diagnostic
from espnet_speechlm_plugin.scoring.diagnostic import DiagnosticError, Utterance
from espnet_speechlm_plugin.scoring.metrics import unanswerable_strings
from espnet_speechlm_plugin.vocab import parse_prompt


def load_utterances(data_dir: Path, n: int, seed: int, source_lang: Optional[str],
                    languages: Optional[List[str]] = None) -> List[Utterance]:
    """The diagnostic's subset of `data_dir`, with each utterance's source language and transcript."""
    prompts = read_kaldi_text(data_dir / "prompt")
    if not prompts:
        raise DiagnosticError(f"{data_dir / 'prompt'}: no utterance to diagnose")
    refs = read_kaldi_text(data_dir / "text") if (data_dir / "text").is_file() else {}
    transcripts = read_kaldi_text(data_dir / "transcript") if (data_dir / "transcript").is_file() else {}
    utts = []
    for utt in diagnostic.pick_subset(list(prompts), n, seed):
        prompt = prompts[utt]
        # A transcription's reference is what the audio says, when there is no transcript file.
        is_transcription = parse_prompt(prompt, None, f"{data_dir / 'prompt'}: utterance '{utt}'").task == "transcribe"
        transcript = transcripts.get(utt) or (refs.get(utt) if is_transcription else None)
        utts.append(Utterance(utt, diagnostic.source_language(utt, prompt, transcript, source_lang, languages),
                              transcript, prompt))
    return utts


def run_diagnostic(decoder, data_dir: Path, out_dir: Path, *, n: int, seed: int = 0,
                   source_lang: Optional[str] = None, model_name: str = "") -> Path:
    """Decode every prompt of the plan with ``decoder`` (a ``decoding.BatchDecoder``: the model and the decoding
    options of stage 5), label and write `<out_dir>/task_confusion.{json,md}`; returns the JSON path."""
    from espnet_speechlm_plugin.decoding import Request, data_dir_requests
    from espnet_speechlm_plugin.scoring.report import render_diagnostic

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    languages = list(decoder.train_args.languages)
    utts = load_utterances(data_dir, n, seed, source_lang, languages)
    runs = diagnostic.plan_runs(utts, languages)
    audio = {r.key: r for r in data_dir_requests(data_dir)}
    # every (prompt, utterance) pair in one decoding pass: batches mix prompts, each item decodes as it would alone
    requests = [Request(f"{i} {utt}", prompt, audio[utt].pieces, audio[utt].frames)
                for i, run in enumerate(runs) for utt, prompt in run.prompts.items()]
    hyps = decoder.decode(requests, progress=True, desc=f"diagnose {data_dir.name}")
    outputs = [{utt: hyps[f"{i} {utt}"] for utt in run.prompts} for i, run in enumerate(runs)]
    records = diagnostic.label_outputs(utts, runs, outputs, languages,
                                       list(unanswerable_strings(data_dir).values()))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / diagnostic.DIAGNOSTIC_FILE
    diagnostic.write_diagnostic(path, records, n_utts=len(utts), model=model_name, data_dir=str(data_dir))
    md = "\n".join(render_diagnostic(diagnostic.read_diagnostic(path), path))
    write_atomic(out_dir / "task_confusion.md", md)
    return path


def get_parser() -> argparse.ArgumentParser:
    from espnet_speechlm_plugin.decoding import add_decode_arguments

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.yaml of the experiment")
    p.add_argument("--model_file", required=True, help="e.g. exp/stage2/valid.acc.best.pth")
    p.add_argument("--data_dir", required=True, type=Path, help="test set dump dir (feats.scp, prompt[, transcript])")
    p.add_argument("--out_dir", required=True, type=Path,
                   help="where task_confusion.{json,md} go; stage 6 reads <decode_dir>/<test_set>/diagnose")
    p.add_argument("--diagnose_n", type=int, default=200, help="utterances to decode with every prompt")
    p.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    p.add_argument("--source_lang", default=None,
                   help="language of the audio where neither a transcribe prompt nor a transcript tells it")
    return add_decode_arguments(p)  # exactly stage 5's decoding options (speechlm.sh passes its --decode_args)


def main(argv: Optional[List[str]] = None) -> int:
    a = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from espnet_speechlm_plugin.decoding import BatchDecoder, generate_config

    try:
        if a.diagnose_n <= 0:
            raise ValueError("--diagnose_n must be > 0")
        generate_config(a)  # bad decoding options fail before the model is loaded
        from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

        t0 = time.time()
        model, train_args = SpeechLMTask.load_model(a.config, a.model_file, a.device)
        path = run_diagnostic(BatchDecoder.from_args(model, train_args, a), a.data_dir, a.out_dir,
                              n=a.diagnose_n, seed=a.seed, source_lang=a.source_lang, model_name=str(a.model_file))
    except (ValueError, KaldiFileError) as e:  # DiagnosticError, a bad prompt line, missing features, bad options
        print(f"diagnose: error: {e}", file=sys.stderr)
        return 1
    print((a.out_dir / "task_confusion.md").read_text(encoding="utf-8"))
    logging.info(f"diagnostic written to {path} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
