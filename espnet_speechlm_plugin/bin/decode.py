"""Decode a feature dir with a trained SpeechLM (recipe stage 5): batched greedy or beam decoding → Kaldi ``text``.

    python -m espnet_speechlm_plugin.bin.decode --config exp/stage2/config.yaml \
        --model_file exp/stage2/valid.acc.best.pth --data_dir dump/test --out_dir exp/stage2/decode/test

Reads ``feats.scp`` and ``prompt`` (``utt lang task [question…]``) of ``data_dir``; writes ``out_dir/text``
(``utt hypothesis``, sorted) atomically. ``--prompt_override "de translate"`` decodes every utterance with one
prompt instead (used by the task-confusion diagnostic). ``--beam_size 4`` decodes with beam search (K rows per
utterance through the same KV cache; ~K times the compute of greedy); 1 (default) is greedy. ``--key_file F``
decodes only the utterances F lists (first column, ESPnet's convention): one job of sharded decoding
(``bin/decode_shards.py``, recipe stage 5 with ``--inference_nj``).
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

import kaldiio
import torch
from tqdm import tqdm

from espnet_speechlm_plugin.data.kaldi import read_kaldi_text, write_kaldi_text
from espnet_speechlm_plugin.data.shards import DEFAULT_BATCH_SIZE, decode_batches, read_key_file, read_lengths
from espnet_speechlm_plugin.model.generate import GenerateConfig, generate
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask


def decode_dir(model, args, data_dir: Path, batch_size: int = DEFAULT_BATCH_SIZE,
               gen: GenerateConfig = GenerateConfig(), prompt_override: Optional[str] = None, device: str = "cpu",
               keys: Optional[List[str]] = None) -> Dict[str, str]:
    tok = SpeechLMTask._tokenizer(args)
    pre = SpeechLMTask.build_preprocess_fn(args, train=False)
    collate = SpeechLMTask.build_collate_fn(args, train=False)
    feats = kaldiio.load_scp(str(data_dir / "feats.scp"))
    prompts = read_kaldi_text(data_dir / "prompt")
    if keys is not None:  # one job of sharded decoding: these utterances, in the prompt file's order
        unknown = sorted(set(keys) - set(prompts))
        if unknown:
            raise ValueError(f"the key file names {len(unknown)} utterances that {data_dir}/prompt does not have, "
                             f"e.g. '{unknown[0]}'")
        wanted = set(keys)
        prompts = {u: p for u, p in prompts.items() if u in wanted}
    missing = sorted(set(prompts) - set(feats.keys()))
    if missing:
        raise ValueError(f"{data_dir}/feats.scp has no features for {len(missing)} utterances of prompt, "
                         f"e.g. '{missing[0]}': rerun the feature stage")
    hyps: Dict[str, str] = {}
    for uids in tqdm(decode_batches(list(prompts), read_lengths(data_dir), batch_size), desc=f"decode {data_dir.name}",
                     unit="batch"):
        items = [(u, pre(u, {"speech": feats[u], "prompt": prompt_override or prompts[u]})) for u in uids]
        _, batch = collate(items)
        batch = {k: v.to(device) for k, v in batch.items()}
        ids = generate(model, batch["speech"], batch["speech_lengths"], batch["prompt"], batch["prompt_lengths"], gen)
        for u, seq in zip(uids, ids):
            hyps[u] = " ".join(tok.decode(seq, skip_special_tokens=True).split())  # one line, no newlines
    return hyps


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.yaml of the experiment")
    p.add_argument("--model_file", required=True, help="e.g. exp/stage2/valid.acc.best.pth")
    p.add_argument("--data_dir", required=True, type=Path)
    p.add_argument("--out_dir", required=True, type=Path)
    p.add_argument("--key_file", type=Path, default=None,
                   help="decode only the utterances this file lists (first column; one job of sharded decoding)")
    p.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--max_new_tokens", type=int, default=GenerateConfig.max_new_tokens)
    p.add_argument("--beam_size", type=int, default=GenerateConfig.beam_size,
                   help="1 = greedy (default); K > 1 = beam search with K beams per utterance")
    p.add_argument("--length_penalty", type=float, default=GenerateConfig.length_penalty,
                   help="beam search ranks finished hypotheses by sum(log p) / length ** this (0 = raw sum)")
    p.add_argument("--encoder_batch_size", type=int, default=GenerateConfig.encoder_batch_size,
                   help="audio items encoded per call (CPU: small chunks stay in cache; 0 = the whole batch, for GPUs)")
    p.add_argument("--prompt_override", default=None, help="decode every utterance with this 'lang task [q]'")
    p.add_argument("--device", default="cpu")
    p.add_argument("--nthreads", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(a.nthreads)
    model, args = SpeechLMTask.load_model(a.config, a.model_file, a.device)
    t0 = time.time()
    if a.beam_size < 1:
        p.error(f"--beam_size must be >= 1, got {a.beam_size}")
    gen = GenerateConfig(max_new_tokens=a.max_new_tokens, beam_size=a.beam_size, length_penalty=a.length_penalty,
                         encoder_batch_size=a.encoder_batch_size)
    keys = read_key_file(a.key_file) if a.key_file else None
    hyps = decode_dir(model, args, a.data_dir, a.batch_size, gen, a.prompt_override, a.device, keys)
    write_kaldi_text(a.out_dir / "text", hyps)
    logging.info(f"decoded {len(hyps)} utterances in {time.time() - t0:.1f} s → {a.out_dir / 'text'}")


if __name__ == "__main__":
    main()
