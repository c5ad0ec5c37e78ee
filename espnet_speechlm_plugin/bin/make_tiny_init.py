"""Make small randomly initialised HF models (w2v-BERT encoder, Qwen2 decoder) and a corpus-trained tokenizer.

Used where no pretrained checkpoint can be downloaded: the CPU demo recipe (its "pretrained" models start here)
and the tests. They are written with ``save_pretrained`` and loaded back through the same
``from_pretrained(name_or_path)`` path as Qwen2.5 and w2v-BERT 2.0, so nothing in the model code is test-only.

    python -m espnet_speechlm_plugin.bin.make_tiny_init --text data/train/text --out_dir exp/init \
        --encoder_hidden 128 --encoder_layers 2 --decoder_hidden 128 --decoder_layers 2 --vocab_size 2000
"""

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

from espnet_speechlm_plugin.data.kaldi import read_kaldi_values, replace_dir

# ByteLevel BPE like Qwen's; Chinese characters are split off so each is (at least) one token
_CJK = "[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"


def train_tokenizer(texts: Iterable[str], out_dir: str, vocab_size: int = 2000):
    """A byte-level BPE tokenizer trained on ``texts``, saved as an HF fast tokenizer (eos/pad = <|endoftext|>)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(_CJK), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(out_dir)
    return fast


def make_encoder(out_dir: str, hidden: int = 128, layers: int = 2, heads: int = 4, seed: int = 0):
    """A tiny w2v-BERT (same architecture as w2v-BERT 2.0, 160-dim input). Like the real one it masks time spans
    (SpecAugment) in training mode, more lightly than w2v-BERT 2.0 (10 % in spans of 8 frames at 50 Hz = 0.16 s, at
    least 1, instead of 5 % in spans of 0.2 s, at least 2, with which one demo run reached an English WER of 0.24
    instead of 0.12-0.14: a 2-layer encoder trained for minutes on 2.5 h of speech needs less). The encoder wrapper
    converts the span to the rate it is fed: 2 frames at 12.5 Hz behind the demo's 2 Conv1d layers."""
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    set_all_random_seed(seed)
    config = Wav2Vec2BertConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden,
        output_hidden_size=hidden, feature_projection_input_dim=160, conv_depthwise_kernel_size=15,
        left_max_position_embeddings=16, right_max_position_embeddings=4, mask_time_prob=0.1, mask_time_length=8,
        mask_time_min_masks=1, layerdrop=0.0,
    )
    model = Wav2Vec2BertModel(config)
    model.save_pretrained(out_dir)
    return model


def make_decoder(out_dir: str, vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4,
                 kv_heads: int = 2, seed: int = 0):
    """A tiny Qwen2 causal LM (the Qwen2.5 architecture at toy size) with tied embeddings."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    set_all_random_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
        tie_word_embeddings=True, rope_theta=10000.0,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir)
    return model


def make_tiny_init(texts: Iterable[str], out_dir: str, vocab_size: int = 2000, encoder_hidden: int = 128,
                   encoder_layers: int = 2, decoder_hidden: int = 128, decoder_layers: int = 2,
                   heads: int = 4, seed: int = 0) -> Path:
    """Write ``out_dir/{encoder,decoder,tokenizer}`` (the tokenizer also inside decoder/, as on the hub); atomically."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=out.name + ".tmp"))
    try:
        tok = train_tokenizer(texts, str(tmp / "decoder"), vocab_size)
        tok.save_pretrained(str(tmp / "tokenizer"))  # a stable copy: decoder/ is rewritten by LM pretraining
        make_encoder(str(tmp / "encoder"), encoder_hidden, encoder_layers, heads, seed)
        make_decoder(str(tmp / "decoder"), len(tok), decoder_hidden, decoder_layers, heads, max(1, heads // 2), seed)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", nargs="+", required=True, help="Kaldi text files (utt text) to train the tokenizer on")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--vocab_size", type=int, default=2000)
    p.add_argument("--encoder_hidden", type=int, default=128)
    p.add_argument("--encoder_layers", type=int, default=2)
    p.add_argument("--decoder_hidden", type=int, default=128)
    p.add_argument("--decoder_layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = make_tiny_init(read_kaldi_values(a.text), a.out_dir, a.vocab_size, a.encoder_hidden, a.encoder_layers, a.decoder_hidden,
                         a.decoder_layers, a.heads, a.seed)
    print(f"wrote {out}/encoder and {out}/decoder (tokenizer inside decoder/)")


if __name__ == "__main__":
    main()
