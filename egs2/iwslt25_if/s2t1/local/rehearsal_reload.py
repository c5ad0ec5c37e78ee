#!/usr/bin/env python3
"""Rehearsal check after stage 7: reload the packed zip with ``SpeechLMInference.from_pretrained`` and decode every
test set's audio files (data/<set>/wav.scp, with each utterance's prompt) through the Python API; its outputs must
equal stage 5's hypotheses (<decode_dir>/<set>/text) utterance for utterance.

    python local/rehearsal_reload.py --zip exp/x_stage2/packed/model.zip \
        --decode_dir exp/x_stage2/decode_valid.acc.best --data_root data --max_new_tokens 8 --out reload.json

Stage 5 decodes whole utterances, so the API is given a ``max_seconds`` above the longest test clip (no
segmentation); everything else is the API's default path: audio file → 16 kHz mono → fbank → prompt → decoding.
Writes a JSON summary ({set: {utterances, equal, mismatches}}); exits 1 if any output differs.
"""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def read_kaldi(path: Path) -> dict:
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            utt, _, value = line.rstrip("\n").partition(" ")
            if utt:
                out[utt] = value
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zip", required=True, type=Path)
    p.add_argument("--decode_dir", required=True, type=Path, help="stage 5's output: <set>/text per test set")
    p.add_argument("--data_root", required=True, type=Path, help="holds <set>/{wav.scp,prompt,utt2dur}")
    p.add_argument("--max_new_tokens", type=int, required=True, help="stage 5's decoding cap")
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)

    import torch

    from espnet_speechlm_plugin import SpeechLMInference
    from espnet_speechlm_plugin.model.generate import GenerateConfig
    from espnet_speechlm_plugin.vocab import parse_prompt

    torch.set_num_threads(1)
    sets = sorted(d.parent.name for d in a.decode_dir.glob("*/text"))
    if not sets:
        print(f"rehearsal_reload: no <set>/text under {a.decode_dir}", file=sys.stderr)
        return 1
    longest = max(float(v) for s in sets for v in read_kaldi(a.data_root / s / "utt2dur").values())
    model = SpeechLMInference.from_pretrained(a.zip, max_seconds=longest + 1.0,
                                              generate=GenerateConfig(max_new_tokens=a.max_new_tokens))
    summary, bad = {}, 0
    for s in sets:
        wavs, prompts = read_kaldi(a.data_root / s / "wav.scp"), read_kaldi(a.data_root / s / "prompt")
        stage5 = read_kaldi(a.decode_dir / s / "text")
        groups = defaultdict(list)  # one API call per prompt: (lang, task, question) → utterances
        for utt in stage5:
            lang, task, question = parse_prompt(prompts[utt], None, f"{a.data_root / s / 'prompt'}: utterance '{utt}'")
            groups[(lang, task, question or None)].append(utt)
        api = {}
        for (lang, task, question), utts in groups.items():
            outs = model.decode([wavs[u] for u in utts], task=task, lang=lang, question=question)
            api.update({u: o.text for u, o in zip(utts, outs)})
        mismatches = [dict(utt=u, stage5=stage5[u], api=api[u]) for u in sorted(stage5) if api[u] != stage5[u]]
        bad += len(mismatches)
        summary[s] = dict(utterances=len(stage5), equal=len(stage5) - len(mismatches),
                          nonempty=sum(bool(t) for t in stage5.values()), mismatches=mismatches)
        print(f"{s}: {len(stage5) - len(mismatches)}/{len(stage5)} API outputs equal stage 5's")
    a.out.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
