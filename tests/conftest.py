"""Shared fixtures: a tiny random w2v-BERT + Qwen2 + tokenizer, saved and loaded like real checkpoints."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; a hub name must fail fast and clearly

import pytest
import torch

torch.set_num_threads(1)

TINY_TEXTS = [
    "the red cat sees two dogs in the garden",
    "a small green bird sleeps on the old bridge",
    "die rote Katze sieht zwei Hunde im Garten",
    "il gatto rosso vede due cani nel giardino",
    "红色的猫在花园里看见两只狗",
    "what colour is the cat",
    "Not answerable.",
    "Nicht zu beantworten.",
    "Non è possibile rispondere.",
    "无法回答。",
]


@pytest.fixture(scope="session")
def tiny_init(tmp_path_factory):
    """``<dir>/encoder`` (w2v-BERT, hidden 64) and ``<dir>/decoder`` (Qwen2, hidden 64, tokenizer inside)."""
    from espnet_speechlm_plugin.bin.make_tiny_init import make_tiny_init

    out = tmp_path_factory.mktemp("init") / "init"
    return make_tiny_init(TINY_TEXTS * 4, str(out), vocab_size=400, encoder_hidden=64, decoder_hidden=64,
                          heads=4, seed=0)


def task_args(tiny_init, *extra):
    """SpeechLMTask arguments for the tiny models (plus any command-line overrides)."""
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    return SpeechLMTask.get_parser().parse_args([
        "--output_dir", "unused",
        "--encoder_conf", f"name_or_path={tiny_init}/encoder",
        "--decoder_conf", f"name_or_path={tiny_init}/decoder",
        "--length_adapter_conf", "num_heads=4",
        "--length_adapter_conf", "ffn_dim=128",
        *extra,
    ])
