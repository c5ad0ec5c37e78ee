"""bin/memory_plan: parameter, gradient and optimizer bytes counted on the meta device for the real configs, and the
activation measurement's extrapolation (1-2 layers, 1-2 utterances, 3 lengths → full depth and batch) equal to a
direct measurement, on tiny architectures built with the real configs' settings."""
import json
import math

import pytest
import yaml

from espnet_speechlm_plugin.bin import make_real_init as mri
from espnet_speechlm_plugin.bin import memory_plan as mp
from espnet_speechlm_plugin.bin.model_size import count_params, parse_config

RECIPE_CONF = mp.REPO / "egs2" / "iwslt25_if" / "s2t1" / "conf"


def test_counts_of_real_configs():
    s1 = mp.plan_config(str(RECIPE_CONF / "stage1_qwen2.5-0.5b.yaml"), measure=False)
    s2 = mp.plan_config(str(RECIPE_CONF / "stage2_qwen2.5-0.5b.yaml"), measure=False)
    lora = mp.plan_config(str(RECIPE_CONF / "stage2_qwen2.5-1.5b_lora.yaml"), measure=False)
    ds = mp.plan_config(str(RECIPE_CONF / "stage1_qwen2.5-1.5b_deepspeed.yaml"), measure=False)
    model = mp._build_on_meta(parse_config(str(RECIPE_CONF / "stage2_qwen2.5-0.5b.yaml")))
    total = sum(count_params(model).values())
    assert s2["trainable_params"] == total and s2["frozen_params"] == 0
    assert s1["trainable_params"] + s1["frozen_params"] == total
    assert s1["trainable_params"] == sum(count_params(model, ["encoder", "decoder"]).values())
    for plan in (s1, s2, lora):  # float32 weights, float32 gradients, two float32 AdamW moments
        assert set(plan["params_by_dtype"]) == {"float32"}
        assert plan["gb"]["weights"] == pytest.approx(4 * (plan["trainable_params"] + plan["frozen_params"]) / 1e9)
        assert plan["gb"]["gradients"] == pytest.approx(4 * plan["trainable_params"] / 1e9)
        assert plan["gb"]["optimizer"] == pytest.approx(2 * plan["gb"]["gradients"])
    # the LoRA config freezes the LM's own weights: its trainable part is the encoder, adapter, embeddings, factors
    assert 0 < lora["trainable_params"] < lora["frozen_params"]
    # DeepSpeed ZeRO-2 bf16 over the 4 GPUs of its header: bf16 weights, gradients and optimizer split 4 ways
    assert ds["ngpu"] == 4
    assert ds["gb"]["weights"] == pytest.approx(2 * (ds["trainable_params"] + ds["frozen_params"]) / 1e9)
    assert ds["gb"]["optimizer"] == pytest.approx(12 * ds["trainable_params"] / 4 / 1e9)
    # the batch: 4.8M numel bins of 45 s utterances (the stage-2 mix's max_duration) → 13 per batch
    assert s2["batch"]["max_duration_s"] == 45.0 and s2["batch"]["utterances_per_batch_per_gpu"] == 13


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """The real stage-2 LoRA config of Qwen2.5-1.5B, pointed at tiny architectures with the real settings."""
    root = tmp_path_factory.mktemp("plan")
    mri.make_real_init(["the cat sleeps", "die Katze schläft"], str(root / "init"),
                       ["facebook/w2v-bert-2.0", "Qwen/Qwen2.5-1.5B"], size="tiny", corpus_tokens=300)
    config = yaml.safe_load((RECIPE_CONF / "stage2_qwen2.5-1.5b_lora.yaml").read_text())
    config["encoder_conf"]["name_or_path"] = str(root / "init" / "w2v-bert-2.0")
    config["decoder_conf"]["name_or_path"] = str(root / "init" / "qwen2.5-1.5b")
    config["encoder_conf"]["config_overrides"]["mask_time_prob"] = 0.0  # random masks would change nothing here
    path = root / "stage2_tiny_lora.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_extrapolated_activations_equal_a_direct_measurement(tiny_config, tmp_path, monkeypatch):
    args = parse_config(str(tiny_config))
    seconds = 12.0
    # measured on utterances of at most 480 encoder frames (9.6 s at 50 Hz: the config has no compressor),
    # extrapolated to 12 s
    monkeypatch.setattr(mp, "MAX_MEASURED_ENCODER_FRAMES", 480)
    m = mp.measure_activations(args, seconds, 4.0, enc_layers=4, dec_layers=3)
    assert max(m["measured_seconds"]) < seconds
    # the config's LoRA decoder and its encoder train, so HF checkpoints their layers; the backward pass
    # recomputes one of them at a time
    assert m["gradient_checkpointing"] and m["recompute_per_utterance"] > 0
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    model = SpeechLMTask.build_model(mp._reduced_args(args, 4, 3, tmp_path))
    model.train()
    vocab = model.decoder.lm.get_input_embeddings().num_embeddings
    for batch in (1, 3):
        direct = mp._forward_bytes(model, vocab, batch, seconds, 4.0)
        # lengths are whole frames and tokens (conv strides round), so the fit is close, not exact
        assert m["per_batch"] + batch * m["per_utterance"] == pytest.approx(direct, rel=0.02), batch


def test_quadratic_through_three_points():
    f = lambda x: 3 + 2 * x + 0.5 * x * x  # noqa: E731
    assert mp._quadratic([1, 2, 4], [f(1), f(2), f(4)], 10) == pytest.approx(f(10))


def test_plan_entry_with_activations_and_advice(tiny_config):
    plan = mp.plan_config(str(tiny_config), gpu_gb=80)
    assert plan["fits"] and plan["gb"]["activations"] > 0 and plan["advice"] == ""
    assert json.loads(json.dumps(plan)) == plan  # serialisable as report.json needs
    g, a, utts = plan["gb"], plan["activations"], plan["batch"]["utterances_per_batch_per_gpu"]
    assert g["activations"] == pytest.approx((a["per_batch"] + a["recompute_per_batch"]
                                              + utts * (a["per_utterance"] + a["recompute_per_utterance"])) / 1e9)
    # a GPU that holds the model and 2 utterances of the batch, not all of them
    fixed = g["weights"] + g["gradients"] + g["optimizer"] + (a["per_batch"] + a["recompute_per_batch"]) / 1e9
    per_utt = (a["per_utterance"] + a["recompute_per_utterance"]) / 1e9
    small = mp.plan_config(str(tiny_config), gpu_gb=(fixed + 2.5 * per_utt) * (1 + mp.RESERVE) + mp.CUDA_CONTEXT_GB)
    assert not small["fits"], small["gb"]
    assert small["advice"].startswith("batch_bins ≤ ") and "(2 utterances of max_duration per GPU)" in small["advice"]
    assert f"accum_grad × {math.ceil(utts / 2)}" in small["advice"]
