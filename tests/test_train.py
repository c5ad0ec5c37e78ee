"""The training entry point through ESPnet's AbsTask.main() and Trainer: waves → features → stage 1 → stage 2 →
checkpoints, best-model links, loss plot → safe reload → batched decoding."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_speechlm_plugin.bin import decode, featurize, speechlm_train
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

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


@pytest.fixture(scope="module")
def trained(tiny_init, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_data_dir(root)
    dump = root / "dump"
    featurize.main(["--data_dir", str(data), "--out_dir", str(dump), "--nj", "1"])
    exp1, exp2 = root / "exp1", root / "exp2"
    speechlm_train.main(train_cmd("conf/stage1_tiny.yaml", exp1, dump, tiny_init))
    speechlm_train.main(train_cmd("conf/stage2_tiny.yaml", exp2, dump, tiny_init,
                                  "--init_param", str(exp1 / "valid.loss.best.pth")))
    return root, dump, exp1, exp2


def test_stage1_then_stage2_write_checkpoints_best_links_and_plots(trained):
    _, _, exp1, exp2 = trained
    for exp in (exp1, exp2):
        for name in ("config.yaml", "checkpoint.pth", "1epoch.pth", "2epoch.pth", "valid.loss.best.pth",
                     "valid.acc.best.pth", "images/loss.png", "images/acc.png"):
            assert (exp / name).exists(), exp / name
    config1 = yaml.safe_load((exp1 / "config.yaml").read_text())
    assert config1["freeze_param"] == ["encoder", "decoder"] and config1["length_hint_prob"] == 0.9


def test_stage1_kept_encoder_and_lm_stage2_started_from_stage1(trained, tiny_init):
    _, _, exp1, exp2 = trained
    s1 = torch.load(exp1 / "valid.loss.best.pth", weights_only=True)
    s2_epoch1 = torch.load(exp2 / "1epoch.pth", weights_only=True)
    from transformers import AutoModelForCausalLM, Wav2Vec2BertModel

    # stage 1 left the frozen encoder and LM bit-identical to the pretrained ones
    for k, v in Wav2Vec2BertModel.from_pretrained(f"{tiny_init}/encoder").state_dict().items():
        assert torch.equal(s1[f"encoder.model.{k}"], v), k
    for k, v in AutoModelForCausalLM.from_pretrained(f"{tiny_init}/decoder").state_dict().items():
        if "embed_tokens" not in k and "lm_head" not in k:  # embeddings were grown by the special tokens
            assert torch.equal(s1[f"decoder.lm.{k}"], v), k
    # stage 2 trained from stage 1's weights: its projector moved away from them but not back to random
    assert not torch.equal(s2_epoch1["projector.weight"], s1["projector.weight"])
    assert torch.nn.functional.cosine_similarity(s2_epoch1["projector.weight"].flatten(),
                                                 s1["projector.weight"].flatten(), dim=0) > 0.9


def test_decode_cli_writes_one_hypothesis_per_utterance(trained):
    root, dump, _, exp2 = trained
    out = root / "decode"
    decode.main(["--config", str(exp2 / "config.yaml"), "--model_file", str(exp2 / "valid.acc.best.pth"),
                 "--data_dir", str(dump), "--out_dir", str(out), "--batch_size", "4", "--max_new_tokens", "5"])
    lines = (out / "text").read_text(encoding="utf-8").splitlines()
    assert [line.split(" ")[0] for line in lines] == sorted(u for u, *_ in UTTS)


def test_checkpoint_of_another_architecture_is_refused(trained, tmp_path):
    exp2 = trained[3]
    config = yaml.safe_load((exp2 / "config.yaml").read_text())
    config["length_adapter"] = "linear"
    config["length_adapter_conf"] = {"stride": 4}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="does not fit the model of .*missing.*unexpected.*another config"):
        SpeechLMTask.load_model(tmp_path / "config.yaml", exp2 / "valid.acc.best.pth")
