"""Write randomly initialised real-size models (w2v-BERT 2.0, Qwen2.5-0.5B/1.5B, …) and a local Qwen2-style tokenizer.

Used by the rehearsal of the IWSLT recipe (``egs2/iwslt25_if/s2t1/run.sh --rehearsal true``): the hub is not
reachable offline, so each pretrained model the real configs name is rebuilt from its published ``config.json``
(bundled in ``espnet_speechlm_plugin/arch/``) with random weights and written with ``save_pretrained``; the
configs then load it through their own ``from_pretrained(name_or_path)`` path, with ``name_or_path`` pointing at
the folder written here. Weights are stored in the dtype the hub checkpoints use (``torch_dtype`` of config.json:
bfloat16 for Qwen2.5, float32 for w2v-BERT 2.0), so loading converts exactly as it does for the real files.

The tokenizer is a byte-level BPE with Qwen2's conventions: its pre-tokenizer regex, NFC normalisation, 151,643
regular tokens, then its 22 added tokens (``<|endoftext|>`` = 151643 … ``<|file_sep|>``), eos = pad =
``<|endoftext|>``, no bos, class ``Qwen2TokenizerFast``. Its first tokens are learnt from the recipe's own text,
the rest are printable ASCII strings (so a random LM's output decodes to text); our language/task tokens then get
the ids they get with Qwen's tokenizer, and the LM keeps its config's 151,936 embedding rows.

    python -m espnet_speechlm_plugin.bin.make_real_init --text dump/train/text dump/train/prompt \
        --out_dir exp/init --models facebook/w2v-bert-2.0 Qwen/Qwen2.5-0.5B Qwen/Qwen2.5-1.5B

``--size tiny`` keeps every setting of each config.json but shrinks widths and depths (same classes, same
SpecAugment/dropout/vocabulary), for developing the rehearsal quickly; the rehearsal proper uses ``real``.
Each model folder is written in a temporary folder and renamed; a folder that exists is kept (``--force`` rebuilds).
"""

import argparse
import gc
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import torch

from espnet_speechlm_plugin.bin.model_size import ARCH_DIR, load_index
from espnet_speechlm_plugin.data.kaldi import read_kaldi_values, replace_dir

# transformers' Qwen2Tokenizer splits text with this pattern before byte-level BPE
QWEN2_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                           r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
# Qwen2.5's added tokens in id order (151643 … 151664 in the released tokenizer); the first 13 after
# <|endoftext|> are its additional special tokens, the rest are added but not special
QWEN2_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
QWEN2_ADDED = ["<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
               "<|repo_name|>", "<|file_sep|>"]

# --size tiny: widths and depths per model type; every other key of the published config is kept
TINY = {
    "wav2vec2-bert": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                          output_hidden_size=64),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_window_layers=2),
    "phi3": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
}
DECODER_TYPES = ("qwen2", "phi3")


QWEN2_REGULAR_TOKENS = 151643  # byte-level BPE tokens of Qwen2.5's tokenizer; its added tokens follow


def _printable_fill(vocab: Dict[str, int], merges: List[tuple], size: int) -> None:
    """Grow a byte-level BPE ``vocab``/``merges`` to ``size`` tokens with every 2-, then 3-character string of
    printable ASCII (in byte-level form), each one merge of tokens already present; appended after the corpus merges,
    so the corpus tokenises as before, and every id decodes to readable text."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    chars = [bytes_to_unicode()[b] for b in range(0x20, 0x7F)]
    for length in (2, 3):
        prefixes = [a + b for a in chars for b in chars] if length == 3 else chars
        for prefix in prefixes:
            for c in chars:
                if len(vocab) >= size:
                    return
                token = prefix + c
                if token not in vocab and prefix in vocab:
                    vocab[token] = len(vocab)
                    merges.append((prefix, c))
    raise ValueError(f"cannot fill a vocabulary of {size} tokens with printable strings of up to 3 characters")


def train_qwen2_tokenizer(texts: Iterable[str], out_dir: str, regular_tokens: int = QWEN2_REGULAR_TOKENS,
                          corpus_tokens: int = 4000):
    """A byte-level BPE with Qwen2's pre-tokenizer and added tokens, saved as an HF fast tokenizer that
    ``AutoTokenizer`` loads as ``Qwen2TokenizerFast``.

    Its first ``corpus_tokens`` tokens are learnt from ``texts``; the rest, up to ``regular_tokens`` (Qwen2.5's
    151,643 by default), are printable ASCII strings, so that the added tokens get Qwen2.5's ids
    (``<|endoftext|>`` = 151643 = the configs' eos/bos id) and any id a random LM emits decodes to text."""
    import json as _json

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    def pipeline(tok):
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
        return tok

    learnt = pipeline(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=min(corpus_tokens, regular_tokens), special_tokens=[],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    learnt.train_from_iterator(list(texts), trainer=trainer)
    model = _json.loads(learnt.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    _printable_fill(vocab, merges, regular_tokens)
    tok = pipeline(Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False)))
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN2_SPECIAL])
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN2_ADDED])
    fast = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                              unk_token=None, bos_token=None, additional_special_tokens=QWEN2_SPECIAL[1:],
                              model_max_length=131072, errors="replace", clean_up_tokenization_spaces=False)
    fast.save_pretrained(out_dir)
    return fast


def _config(name: str, size: str):
    from transformers import AutoConfig

    index = load_index()
    if name not in index:
        raise ValueError(f"{name}: not a bundled architecture ({', '.join(sorted(index))}); add it to {ARCH_DIR}")
    config = AutoConfig.from_pretrained(str(ARCH_DIR / index[name]["dir"]))
    if size == "tiny":
        for k, v in TINY[config.model_type].items():
            setattr(config, k, v)
        if hasattr(config, "layer_types") and config.layer_types is not None:
            config.layer_types = config.layer_types[: config.num_hidden_layers]
    return config


def build_model(name: str, size: str = "real", seed: int = 0):
    """The bundled architecture ``name`` (a hub name of ``arch/index.json``), randomly initialised (seeded), in the
    dtype its config.json names (what the hub's weights are stored in)."""
    from transformers import AutoModel, AutoModelForCausalLM

    config = _config(name, size)
    dtype = getattr(config, "torch_dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    cls = AutoModelForCausalLM if config.model_type in DECODER_TYPES else AutoModel
    torch.manual_seed(seed)
    return cls.from_config(config, dtype=dtype)


def folder_name(name: str) -> str:
    return load_index()[name]["dir"]


def make_real_init(texts: Sequence[str], out_dir: str, models: Sequence[str], size: str = "real",
                   corpus_tokens: int = 4000, seed: int = 0, force: bool = False) -> Dict[str, dict]:
    """Write ``out_dir/tokenizer`` and ``out_dir/<arch folder>`` per model (decoders get the tokenizer too, as on the
    hub); returns {hub name: {dir, params, seconds, bytes}} for what was written or found."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    if force or not tok_dir.exists():
        tmp = Path(tempfile.mkdtemp(dir=out, prefix="tokenizer.tmp"))
        try:
            train_qwen2_tokenizer(texts, str(tmp), corpus_tokens=corpus_tokens)
            replace_dir(tmp, tok_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    info = {}
    for name in models:
        dest = out / folder_name(name)
        stamp = dest / "rehearsal_init.json"
        if dest.exists() and stamp.exists() and not force:
            info[name] = json.loads(stamp.read_text(encoding="utf-8"))
            logging.info(f"{dest} exists: kept ({info[name]['params']:,} parameters)")
            continue
        t0 = time.time()
        model = build_model(name, size, seed)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=dest.name + ".tmp"))
        try:
            model.save_pretrained(str(tmp))
            if model.config.model_type in DECODER_TYPES:
                for f in tok_dir.iterdir():
                    shutil.copy(f, tmp / f.name)
            params = sum(p.numel() for p in model.parameters())  # tied embeddings once
            info[name] = dict(dir=str(dest), size=size, seed=seed, params=params,
                              dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
                              seconds=round(time.time() - t0, 1),
                              bytes=sum(f.stat().st_size for f in tmp.iterdir()))
            (tmp / "rehearsal_init.json").write_text(json.dumps(info[name], indent=1) + "\n", encoding="utf-8")
            replace_dir(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del model
        gc.collect()
        logging.info(f"wrote {dest}: {info[name]['params']:,} parameters ({info[name]['dtype']}), "
                     f"{info[name]['bytes'] / 2**30:.2f} GiB in {info[name]['seconds']} s")
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", nargs="+", required=True, help="Kaldi text/prompt files to train the tokenizer on")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--models", nargs="+", default=["facebook/w2v-bert-2.0", "Qwen/Qwen2.5-0.5B"],
                   help="hub names of arch/index.json (default: %(default)s)")
    p.add_argument("--size", choices=["real", "tiny"], default="real")
    p.add_argument("--corpus_tokens", type=int, default=4000,
                   help="tokens learnt from the text (the rest of Qwen2.5's 151,643 are printable ASCII strings)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild folders that exist")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    info = make_real_init(read_kaldi_values(a.text), a.out_dir, a.models, a.size, a.corpus_tokens, a.seed, a.force)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
