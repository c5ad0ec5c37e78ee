"""bin/make_real_init: the rehearsal's stand-in for the hub — a Qwen2-style tokenizer trained locally (checked against
transformers' own slow Qwen2Tokenizer) and the bundled architectures written with save_pretrained, loaded back
through the model classes' from_pretrained path (tiny widths here; the rehearsal writes the real sizes)."""
import json

import pytest
import torch
from safetensors import safe_open

from espnet_speechlm_plugin.bin import make_real_init as mri
from espnet_speechlm_plugin.bin.model_size import ARCH_DIR

TEXTS = ["The cat sleeps on the warm floor.", "Die Katze schläft auf dem warmen Boden.",
         "Il gatto dorme sul pavimento caldo.", "猫在温暖的地板上睡觉。", "We thank the reviewers for their comments.",
         "what's 42 + 7?\nnew line", "  two  spaces"] * 3


def test_tokenizer_follows_qwen2_conventions_and_equals_the_slow_qwen2_tokenizer(tmp_path):
    from transformers import AutoTokenizer, Qwen2Tokenizer

    from espnet_speechlm_plugin.model.prompt import load_tokenizer

    mri.train_qwen2_tokenizer(TEXTS, str(tmp_path), corpus_tokens=400)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(tok).__name__ == "Qwen2TokenizerFast"
    assert tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    n = len(tok)
    specials = mri.QWEN2_SPECIAL + mri.QWEN2_ADDED
    # Qwen2.5's size and ids: <|endoftext|> = 151643 (its configs' eos/bos id), 151665 tokens in all
    assert tok.convert_tokens_to_ids(specials) == list(range(151643, 151665)) and n == 151665
    # what a random LM emits decodes to printable text
    assert all(tok.decode([i]).isprintable() and tok.decode([i]) for i in (300, 5000, 80000, 151642))
    slow = Qwen2Tokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))  # transformers' own code
    for text in TEXTS[:7] + ["unseen Wörter 和 字 <|im_start|>x<|im_end|>", "a<|endoftext|>"]:
        ids = tok(text)["input_ids"]
        assert tok.decode(ids) == text
        plain = text.split("<|")[0]
        assert tok(plain)["input_ids"] == slow(plain)["input_ids"], plain
    assert tok("x<|im_start|>y")["input_ids"][1] == tok.convert_tokens_to_ids("<|im_start|>")
    # the recipe's tokenizer: our language/task tokens come after Qwen's, eos/pad unchanged
    ours = load_tokenizer(str(tmp_path), ["en", "de"])
    assert len(ours) == n + 2 + 3 and ours.eos_token_id == tok.eos_token_id == ours.pad_token_id


def test_models_keep_their_published_settings_and_load_through_from_pretrained(tmp_path):
    from transformers import AutoConfig

    from espnet_speechlm_plugin.model.hf import HFCausalLM, W2VBertEncoder

    names = ["facebook/w2v-bert-2.0", "Qwen/Qwen2.5-0.5B"]
    info = mri.make_real_init(TEXTS, str(tmp_path), names, size="tiny")
    for name in names:
        folder = tmp_path / mri.folder_name(name)
        saved = AutoConfig.from_pretrained(str(folder)).to_dict()
        published = AutoConfig.from_pretrained(str(ARCH_DIR / mri.folder_name(name))).to_dict()
        shrunk = set(mri.TINY[published["model_type"]]) | {"layer_types", "_name_or_path", "transformers_version"}
        assert {k: v for k, v in saved.items() if k not in shrunk} == {
            k: v for k, v in published.items() if k not in shrunk}, name  # every other published setting kept
        with safe_open(str(folder / "model.safetensors"), "pt") as f:  # stored as the hub stores it
            dtype = f.get_tensor(next(iter(f.keys()))).dtype
        assert dtype == (torch.bfloat16 if name.startswith("Qwen") else torch.float32)
        assert info[name]["params"] > 0
    lm = HFCausalLM(vocab_size=len(json.loads((tmp_path / "tokenizer" / "vocab.json").read_text())) + 30,
                    name_or_path=str(tmp_path / "qwen2.5-0.5b"))
    assert lm.lm.get_input_embeddings().num_embeddings == 151936  # the config's vocabulary: never shrunk
    assert next(lm.parameters()).dtype == torch.float32  # from_pretrained without torch_dtype, as the configs do
    enc = W2VBertEncoder(name_or_path=str(tmp_path / "w2v-bert-2.0"))
    assert (enc.model.config.mask_time_length, enc.model.config.mask_time_min_masks) == (10, 2)  # HF's defaults
    # a second call keeps what exists
    stamp = (tmp_path / "qwen2.5-0.5b" / "rehearsal_init.json").stat().st_mtime_ns
    mri.make_real_init(TEXTS, str(tmp_path), names[1:], size="tiny")
    assert (tmp_path / "qwen2.5-0.5b" / "rehearsal_init.json").stat().st_mtime_ns == stamp


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="not a bundled architecture"):
        mri.build_model("org/unknown", "tiny")
