"""Shared fixtures: a tiny random w2v-BERT + Qwen2 + tokenizer, saved and loaded like real checkpoints."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; a hub name must fail fast and clearly

import numpy as np
import pytest
import soundfile as sf
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


REPO = Path(__file__).resolve().parents[1]
UTTS = [  # (utt, seconds, prompt, target)
    ("spk1-a", 1.2, "en transcribe", "the red cat"),
    ("spk1-b", 0.9, "de translate", "die rote Katze"),
    ("spk1-c", 1.5, "en answer what colour is the cat", "red"),
    ("spk2-a", 1.1, "zh transcribe", "红色的猫"),
    ("spk2-b", 0.7, "it translate", "il gatto rosso"),
    ("spk2-c", 1.3, "en answer what colour is the dog", "Not answerable."),
]


def make_data_dir(root: Path) -> Path:
    """A Kaldi data dir with a few synthetic waves (chirps in noise, distinct per utterance)."""
    rng = np.random.RandomState(0)
    d = root / "data"
    d.mkdir(parents=True)
    lines = {k: [] for k in ("wav.scp", "text", "utt2spk", "prompt")}
    for i, (utt, sec, prompt, target) in enumerate(UTTS):
        t = np.arange(int(sec * 16000)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t * (1 + t)) + 0.01 * rng.randn(len(t))
        sf.write(root / f"{utt}.wav", wav.astype(np.float32), 16000, subtype="PCM_16")
        lines["wav.scp"].append(f"{utt} {root / (utt + '.wav')}")
        lines["text"].append(f"{utt} {target}")
        lines["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        lines["prompt"].append(f"{utt} {prompt}")
    for name, rows in lines.items():
        (d / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return d


def train_cmd(config: str, out: Path, dump: Path, tiny_init: Path, *extra: str):
    data = []
    for split in ("train", "valid"):
        data += [f"--{split}_data_path_and_name_and_type", f"{dump}/feats.scp,speech,kaldi_ark",
                 f"--{split}_data_path_and_name_and_type", f"{dump}/prompt,prompt,text",
                 f"--{split}_data_path_and_name_and_type", f"{dump}/text,text,text",
                 f"--{split}_shape_file", f"{dump}/speech_shape"]
    return ["--config", str(REPO / config), "--output_dir", str(out),
            "--encoder_conf", f"name_or_path={tiny_init}/encoder",
            "--decoder_conf", f"name_or_path={tiny_init}/decoder",
            "--length_adapter_conf", "num_heads=4", "--length_adapter_conf", "ffn_dim=128",
            "--batch_size", "3", "--max_epoch", "2", "--num_att_plot", "0", *data, *extra]


@pytest.fixture(scope="session")
def tiny_exp(tiny_init, tmp_path_factory):
    """A tiny experiment trained through ESPnet: (root, dump dir, stage-1 exp dir, stage-2 exp dir)."""
    from espnet_speechlm_plugin.bin import featurize, speechlm_train

    root = tmp_path_factory.mktemp("train")
    data = make_data_dir(root)
    dump = root / "dump"
    featurize.main(["--data_dir", str(data), "--out_dir", str(dump), "--nj", "1"])
    exp1, exp2 = root / "exp1", root / "exp2"
    speechlm_train.main(train_cmd("tests/conf/stage1_tiny.yaml", exp1, dump, tiny_init))
    speechlm_train.main(train_cmd("tests/conf/stage2_tiny.yaml", exp2, dump, tiny_init,
                                  "--init_param", str(exp1 / "valid.loss.best.pth")))
    return root, dump, exp1, exp2
