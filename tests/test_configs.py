"""Every config in conf/ (and the tests' own tiny ones in tests/conf/) parses as training would parse it and builds
its model.

The tiny configs build for real on tiny local models; the real-size ones build on the meta device from the
architectures bundled in espnet_speechlm_plugin/arch/ and must match the published parameter counts. Stage-1 and
stage-2 configs of one model may differ only in freeze/LR/init/hint keys.
"""

import re
from pathlib import Path

import pytest
import torch
import yaml

from espnet_speechlm_plugin.bin import model_size

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TEST_CONF = REPO / "tests" / "conf"
CONFIGS = sorted(CONF.glob("*.yaml")) + sorted(TEST_CONF.glob("*.yaml"))
REAL_SIZES = ("qwen2.5-0.5b", "qwen2.5-1.5b", "phi-4-mini")
# compression presets: file suffix → (compressor layers, length adapter, its layers, its stride, total, encoder rate)
PRESETS = {"": (0, "w2v_bert_adapter", 2, 2, 4, 50.0), "_paper": (3, "conformer", 2, 1, 8, 6.25)}
DECODERS = {"qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B", "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
            "phi-4-mini": "microsoft/Phi-4-mini-instruct"}
# w2v-BERT 2.0 builds to 580,493,120 parameters (1,024 of them the SpecAugment mask embedding); its card says "600M"
W2V_BERT_CARD, W2V_BERT_TOLERANCE = 600e6, 0.05
# what may differ between stage1_X.yaml and stage2_X.yaml (dotted paths; a trailing ".*" covers a whole sub-dict)
# encoder_conf.gradient_checkpointing: only a training encoder (stage 2) keeps activations to recompute
STAGE_KEYS = ("freeze_param", "length_hint_prob", "init_param", "optim_conf.lr", "optim_conf.param_groups.*",
              "encoder_conf.gradient_checkpointing")


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _allowed(key: str) -> bool:
    return any(key == a or (a.endswith(".*") and key.startswith(a[:-1])) for a in STAGE_KEYS)


def _load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _check_floats_and_header(path: Path, label: str, run_as: str = ""):
    """Parse a training config; its LRs/betas must be numbers and its header must say what and how it runs
    (``--config <run_as>``; default ``conf/<name>``, as a recipe runs it)."""
    args = model_size.parse_config(str(path))
    # YAML 1.1 reads 2e-4 as a string: every learning rate and beta must have come out as a number
    conf = args.optim_conf
    numbers = [conf["lr"], *conf.get("betas", []), *(conf.get("param_groups") or {}).values()]
    assert all(isinstance(v, float) for v in numbers), f"{label}: non-float in optim_conf {conf}"
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    assert header.startswith("# Stage"), f"{label}: first line must say what it trains"
    assert f"--config {run_as or 'conf/' + path.name}" in header, f"{label}: header must give the command that runs it"
    return args


def _check_compression_header(path: Path, model):
    """The header states the total compression and the audio-embedding rate of the model the config builds."""
    header = path.read_text(encoding="utf-8").split("\n\n")[0]
    rate = model.frame_rates()["audio_embeddings"]
    assert f"{model.compression()}x in total (50 Hz fbank → {rate:g} audio embeddings/s)" in header, path.name


def test_conf_has_every_expected_config():
    for folder, models in ((CONF, REAL_SIZES), (TEST_CONF, ("tiny",))):
        names = {p.name for p in folder.glob("*.yaml")}
        expected = {f"stage{s}_{m}.yaml" for s in (1, 2) for m in models}
        if folder == CONF:
            expected |= {f"stage{s}_{m}_paper.yaml" for s in (1, 2) for m in models}
        assert expected <= names, f"missing from {folder.relative_to(REPO)}/: {sorted(expected - names)}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_parses_with_floats_and_a_header(path):
    _check_floats_and_header(path, path.name, str(path.relative_to(REPO)))


@pytest.mark.parametrize("stage1", sorted(CONF.glob("stage1_*.yaml")) + sorted(TEST_CONF.glob("stage1_*.yaml")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_stage_pair_differs_only_in_stage_keys(stage1):
    stage2 = stage1.with_name(stage1.name.replace("stage1_", "stage2_"))
    a, b = _flatten(_load(stage1)), _flatten(_load(stage2))
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))
    assert differing, "the stages must differ somewhere"
    assert [k for k in differing if not _allowed(k)] == [], f"{stage1.name} vs {stage2.name}: {differing}"
    assert set(a["freeze_param"]) == {"encoder", "decoder"} and b["freeze_param"] == []
    assert (a["length_hint_prob"], b["length_hint_prob"]) == (0.9, 0.0)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p or "release")
@pytest.mark.parametrize("size", REAL_SIZES)
def test_real_config_hyperparameters(size, preset):
    s1 = model_size.parse_config(str(CONF / f"stage1_{size}{preset}.yaml"))
    s2 = model_size.parse_config(str(CONF / f"stage2_{size}{preset}.yaml"))
    conv, adapter, layers, stride, _, encoder_rate = PRESETS[preset]
    groups = {"length_adapter": 2.0e-4, "projector": 2.0e-4, "encoder": 6.0e-6, "decoder": 2.0e-5}
    if conv:
        groups["compressor"] = 2.0e-4
    assert s2.optim_conf["param_groups"] == groups
    assert s1.optim == "adamw" and s1.optim_conf["betas"] == [0.9, 0.95]
    assert (s1.batch_type, s1.use_amp, s1.use_tensorboard) == ("numel", True, False)
    assert s1.encoder_conf["name_or_path"] == "facebook/w2v-bert-2.0"
    assert s1.decoder_conf["name_or_path"] == DECODERS[size]
    for s in (s1, s2):
        assert (s.compressor_conf or {}).get("num_layers", 0) == conv and (s.compressor == "conv1d") == bool(conv)
        assert (s.length_adapter, s.length_adapter_conf["num_layers"], s.length_adapter_conf["stride"]) == (
            adapter, layers, stride)
    # the encoder trains in stage 2: at its pretraining rate (50 Hz) its activations are recomputed
    assert s2.encoder_conf.get("gradient_checkpointing", False) == (encoder_rate == 50.0)
    # one cosine over the whole run: T_0 must be the number of optimizer updates, or the LR restarts mid-run
    updates = s1.max_epoch * s1.num_iters_per_epoch // s1.accum_grad
    assert s1.scheduler == "cosineannealingwarmrestarts" and s1.scheduler_conf["T_0"] == updates


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p or "release")
@pytest.mark.parametrize("size", REAL_SIZES)
def test_real_config_rates(size, preset):
    """Each preset's total compression and rates, on the real-size model built on the meta device; the header says
    the same."""
    path = CONF / f"stage2_{size}{preset}.yaml"
    model = model_size.build_on_meta(str(path))
    _, _, _, _, total, encoder_rate = PRESETS[preset]
    rates = model.frame_rates()
    assert model.compression() == total and rates["audio_embeddings"] == 50.0 / total
    assert model.encoder.input_rate == encoder_rate
    _check_compression_header(path, model)


def test_scheduler_keeps_per_group_lr_ratios():
    from espnet2.tasks.abs_task import scheduler_classes

    args = model_size.parse_config(str(CONF / "stage2_qwen2.5-0.5b.yaml"))
    lrs = list(args.optim_conf["param_groups"].values())
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.AdamW([dict(params=[p], lr=lr) for p, lr in zip(params, lrs)], betas=(0.9, 0.95))
    sched = scheduler_classes[args.scheduler](opt, **args.scheduler_conf)
    for _ in range(args.scheduler_conf["T_0"] // 2):
        opt.step()
        sched.step()
    now = [g["lr"] for g in opt.param_groups]
    assert now == pytest.approx([lr / 2 for lr in lrs], rel=1e-6)  # half way down the cosine, ratios kept


@pytest.mark.parametrize("size", REAL_SIZES)
def test_real_model_builds_on_meta_with_published_sizes(size):
    model = model_size.build_on_meta(str(CONF / f"stage1_{size}.yaml"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    index = model_size.load_index()
    published = index[DECODERS[size]]
    counts = model_size.count_params(model)
    decoder = counts["decoder"]
    assert abs(decoder - published["published_params"]) / published["published_params"] < 0.01, (
        f"{DECODERS[size]}: built {decoder:,}, published {published['published_as']}")
    if "exact_params" in published:
        assert decoder == published["exact_params"]
    assert abs(counts["encoder"] - W2V_BERT_CARD) / W2V_BERT_CARD < W2V_BERT_TOLERANCE, counts["encoder"]
    # the tokenizer stand-in is small: embeddings are only grown, so the LM keeps its published vocabulary
    vocab = model.decoder.lm.config.vocab_size
    assert model.decoder.lm.get_input_embeddings().num_embeddings == vocab > 150000
    # stage 1 trains exactly the adapter parts, stage 2 everything
    s1 = model_size.count_params(model, model_size.parse_config(str(CONF / f"stage1_{size}.yaml")).freeze_param)
    s2 = model_size.count_params(model, model_size.parse_config(str(CONF / f"stage2_{size}.yaml")).freeze_param)
    assert s1 == dict(counts, encoder=0, decoder=0) and s2 == counts
    assert counts["compressor"] == 0 and min(counts[m] for m in ("length_adapter", "projector")) > 0  # release preset


def test_report_lists_every_module_and_both_stages(capsys):
    model_size.main([str(CONF / "stage2_qwen2.5-0.5b.yaml")])
    out = capsys.readouterr().out
    assert re.search(r"^decoder\s+494,032,768\s+0\s+494,032,768$", out, re.M), out
    assert "stage1 trainable" in out and "stage2 trainable" in out


def test_unknown_architecture_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="Qwen/Qwen2.5-0.5B.*not-a/model|not-a/model.*Qwen/Qwen2.5-0.5B"):
        model_size.arch_path("not-a/model")


@pytest.mark.parametrize("path", sorted(TEST_CONF.glob("stage*_tiny.yaml")), ids=lambda p: p.name)
def test_tiny_config_builds_and_runs(path, tiny_init):
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = model_size.parse_config(str(path))
    args.encoder_conf = dict(args.encoder_conf, name_or_path=f"{tiny_init}/encoder")
    args.decoder_conf = dict(args.decoder_conf, name_or_path=f"{tiny_init}/decoder")
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args)
    speech = torch.randn(2, 80, 160)
    lengths = torch.tensor([80, 61])
    prompt, text = torch.tensor([[3, 4], [5, 6]]), torch.tensor([[7, 8, 9], [10, 11, 0]])
    loss, stats, weight = model(speech, lengths, prompt, torch.tensor([2, 2]), text, torch.tensor([3, 2]))
    assert torch.isfinite(loss) and loss.item() > 0
    _check_compression_header(path, model)


# ---- every recipe's conf/: training configs parse and build at tiny size, with their own architecture family ----
RECIPE_CONFIGS = sorted(REPO.glob("egs2/*/s2t1/conf/stage*.yaml"))
TINY_ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, rope_scaling=None, max_position_embeddings=4096,
                 original_max_position_embeddings=4096, pad_token_id=0, bos_token_id=0, eos_token_id=0)


@pytest.fixture(scope="session")
def tiny_decoders(tiny_init, tmp_path_factory):
    """Hub name → a local tiny random LM of the SAME architecture (the bundled config.json, sizes shrunk), with
    the tiny tokenizer: the architecture override under which every real config is built in CI."""
    import json
    import shutil

    from transformers import AutoConfig, AutoModelForCausalLM

    out = {}
    for name, entry in model_size.load_index().items():
        if name == "facebook/w2v-bert-2.0":
            continue
        folder = tmp_path_factory.mktemp("arch") / entry["dir"]
        shutil.copytree(f"{tiny_init}/decoder", folder)
        raw = json.loads((model_size.ARCH_DIR / entry["dir"] / "config.json").read_text(encoding="utf-8"))
        raw.update({k: v for k, v in TINY_ARCH.items() if k in raw or k == "rope_scaling"})
        config = AutoConfig.for_model(**raw)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32).save_pretrained(folder)
        out[name] = str(folder)
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_every_recipe_has_training_configs():
    assert {p.parent.parent.parent.name for p in RECIPE_CONFIGS} >= {"mini_espeak", "iwslt25_if"}


@pytest.mark.parametrize("path", RECIPE_CONFIGS, ids=_rel)
def test_recipe_config_parses_and_builds_at_tiny_size(path, tiny_init, tiny_decoders):
    from espnet_speechlm_plugin.model.hf import LoRALinear
    from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

    args = _check_floats_and_header(path, _rel(path))
    decoder = args.decoder_conf["name_or_path"]
    args.encoder_conf = dict(args.encoder_conf, name_or_path=f"{tiny_init}/encoder")
    args.decoder_conf = dict(args.decoder_conf, name_or_path=tiny_decoders.get(decoder, f"{tiny_init}/decoder"))
    args.length_adapter_conf = dict(args.length_adapter_conf, num_heads=4, ffn_dim=128)
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args)
    for t in args.freeze_param:  # as ESPnet's main_worker does, then the optimizer groups must still resolve
        for k, p in model.named_parameters():
            if k == t or k.startswith(t + "."):
                p.requires_grad_(False)
    if any(p.requires_grad for p in model.parameters()):
        assert SpeechLMTask.build_optimizers(args, model)
    lora = args.decoder_conf.get("lora")
    wrapped = [m for m in model.decoder.modules() if isinstance(m, LoRALinear)]
    assert bool(lora) == bool(wrapped)
    if lora:
        assert {n.rsplit(".", 1)[-1] for n, m in model.decoder.named_modules() if isinstance(m, LoRALinear)} == set(
            lora["target_modules"])
        assert not any(m.weight.requires_grad for m in wrapped)
    speech, lengths = torch.randn(2, 160, 160), torch.tensor([160, 121])
    prompt, text = torch.tensor([[3, 4], [5, 6]]), torch.tensor([[7, 8, 9], [10, 11, 0]])
    loss, _, _ = model(speech, lengths, prompt, torch.tensor([2, 2]), text, torch.tensor([3, 2]))
    assert torch.isfinite(loss) and loss.item() > 0
    _check_compression_header(path, model)  # tiny widths, the config's own strides


def test_every_real_config_is_in_a_recipe():
    linked = {p.resolve() for p in RECIPE_CONFIGS}
    assert [p.name for p in CONFIGS if "tiny" not in p.name and p.resolve() not in linked] == []


def test_demo_run_sh_defaults_are_the_demo_configs():
    """mini_espeak/run.sh passes compressor/adapter overrides only for variants: its defaults must be the configs'."""
    recipe = REPO / "egs2" / "mini_espeak" / "s2t1"
    run_sh = (recipe / "run.sh").read_text(encoding="utf-8")
    defaults = {k: re.search(rf"^{k}=(\w+)", run_sh, re.M).group(1)
                for k in ("compressor_layers", "adapter", "adapter_layers", "adapter_stride")}
    assert "!= {compressor_layers}/{adapter}/{adapter_layers}/{adapter_stride} ]".format(**defaults) in run_sh
    defaults = {k: v if k == "adapter" else int(v) for k, v in defaults.items()}
    for stage in (1, 2):
        conf = _load(recipe / "conf" / f"stage{stage}_tiny.yaml")
        layers = conf["compressor_conf"]["num_layers"] if conf["compressor"] == "conv1d" else 0
        assert layers == defaults["compressor_layers"]
        assert conf["length_adapter"] == defaults["adapter"]
        assert conf["length_adapter_conf"]["num_layers"] == defaults["adapter_layers"]
        assert conf["length_adapter_conf"]["stride"] == defaults["adapter_stride"]
