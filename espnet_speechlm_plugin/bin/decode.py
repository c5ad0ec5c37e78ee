"""Decode a feature dir with a trained SpeechLM (recipe stage 5): batched greedy or beam decoding → Kaldi ``text``.

    python -m espnet_speechlm_plugin.bin.decode --config exp/stage2/config.yaml \
        --model_file exp/stage2/valid.acc.best.pth --data_dir dump/test --out_dir exp/stage2/decode/test

Reads ``feats.scp`` and ``prompt`` (``utt lang task [question…]``) of ``data_dir``; writes ``out_dir/text``
(``utt hypothesis``, sorted) atomically. ``--prompt_override "de translate"`` decodes every utterance with one
prompt instead. ``--beam_size 4`` decodes with beam search (K rows per utterance through the same KV cache; ~K
times the compute of greedy); 1 (default) is greedy. ``--key_file F`` decodes only the utterances F lists (first
column, ESPnet's convention): one job of sharded decoding (``bin/decode_shards.py``, recipe stage 5 with
``--inference_nj``). The decoding options are those of every decoding entry point (``espnet_speechlm_plugin.decoding``).
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

from espnet_speechlm_plugin.data.kaldi import write_kaldi_text
from espnet_speechlm_plugin.data.shards import read_key_file
from espnet_speechlm_plugin.decoding import BatchDecoder, add_decode_arguments, data_dir_requests, generate_config


def decode_dir(decoder: BatchDecoder, data_dir: Path, prompt_override: Optional[str] = None,
               keys: Optional[List[str]] = None) -> Dict[str, str]:
    """{utt: hypothesis} for every utterance of ``data_dir`` (only ``keys``, when given)."""
    return decoder.decode(data_dir_requests(data_dir, prompt_override, keys), progress=True,
                          desc=f"decode {Path(data_dir).name}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.yaml of the experiment")
    p.add_argument("--model_file", required=True, help="e.g. exp/stage2/valid.acc.best.pth")
    p.add_argument("--data_dir", required=True, type=Path)
    p.add_argument("--out_dir", required=True, type=Path)
    p.add_argument("--key_file", type=Path, default=None,
                   help="decode only the utterances this file lists (first column; one job of sharded decoding)")
    p.add_argument("--prompt_override", default=None, help="decode every utterance with this 'lang task [q]'")
    return add_decode_arguments(p)


def main(argv: Optional[List[str]] = None) -> None:
    p = get_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        generate_config(a)  # bad options fail before the model is loaded
    except ValueError as e:
        p.error(str(e))
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    model, train_args = SpeechLMTask.load_model(a.config, a.model_file, a.device)
    decoder = BatchDecoder.from_args(model, train_args, a)
    t0 = time.time()
    keys = read_key_file(a.key_file) if a.key_file else None
    hyps = decode_dir(decoder, a.data_dir, a.prompt_override, keys)
    write_kaldi_text(a.out_dir / "text", hyps)
    logging.info(f"decoded {len(hyps)} utterances in {time.time() - t0:.1f} s → {a.out_dir / 'text'}")


if __name__ == "__main__":
    main()
