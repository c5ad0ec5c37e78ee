"""SpeechLM on tiny real models: loss window, batch invariance, attention modes, stages, save/load, errors."""

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, task_args

from espnet_speechlm_plugin.model.speechlm import IGNORE_ID
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask

ITEMS = [  # (frames at 50 Hz, prompt, target)
    (120, "en transcribe", "the red cat sees two dogs"),
    (75, "de translate", "die rote Katze"),
    (96, "zh answer what colour is the cat", "红色"),
    (61, "en answer what colour is the bird", "Not answerable."),
]


def make_batch(args, items=ITEMS, seed=0):
    rng = np.random.RandomState(seed)
    pre = SpeechLMTask.build_preprocess_fn(args, train=False)
    data = [
        (f"utt{i}", pre(f"utt{i}", {"speech": rng.randn(t, 160).astype(np.float32), "prompt": p, "text": y}))
        for i, (t, p, y) in enumerate(items)
    ]
    collate = SpeechLMTask.build_collate_fn(args, train=False)
    return data, collate, collate(data)[1]


def build(args, seed=0):
    torch.manual_seed(seed)
    return SpeechLMTask.build_model(args)


@pytest.fixture(scope="module")
def args(tiny_init):
    return task_args(tiny_init)


def test_every_target_token_and_eos_carry_loss(args):
    model = build(args).eval()
    _, _, batch = make_batch(args)
    loss = model(**batch)[0]
    logits, _ = model.logits(**batch)
    audio_len = model.encode_speech(batch["speech"], batch["speech_lengths"])[1]
    # hand computation: position a+p-1+k predicts target token k (k = 0 is the first target token; last is <eos>)
    total, count = 0.0, 0
    for i in range(len(ITEMS)):
        a, p, y = int(audio_len[i]), int(batch["prompt_lengths"][i]), int(batch["text_lengths"][i])
        for k in range(y):
            logp = torch.log_softmax(logits[i, a + p - 1 + k], -1)
            total -= logp[batch["text"][i, k]].item()
            count += 1
        assert batch["text"][i, y - 1] == model.eos_id
    assert count == int(batch["text_lengths"].sum())
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_item_is_the_same_alone_or_in_a_padded_batch(tiny_init, attention):
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    model = build(args).eval()
    data, collate, batch = make_batch(args)
    logits, labels = model.logits(**batch)
    for i, item in enumerate(data):
        alone, alone_labels = model.logits(**collate([item])[1])
        n = alone.size(1)
        assert torch.equal(labels[i, :n], alone_labels[0])
        assert (labels[i, n:] == IGNORE_ID).all()  # pads only at the end of the row
        torch.testing.assert_close(logits[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_audio_attention_mode(tiny_init, attention):
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    model = build(args).eval()
    _, _, batch = make_batch(args)
    torch.manual_seed(1)
    audio = torch.randn(4, 10, model.decoder.hidden_size())
    audio_lengths = torch.tensor([10, 7, 9, 5])

    def hidden(audio, text):
        embeds, mask, pos, _, _ = model.assemble(audio, audio_lengths, batch["prompt"], batch["prompt_lengths"],
                                                 text, batch["text_lengths"])
        return model.decoder.body(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).last_hidden_state

    base = hidden(audio, batch["text"])
    later_audio = audio.clone()
    later_audio[0, 9] += 1.0  # the last audio frame of item 0
    first_audio_changed = not torch.allclose(hidden(later_audio, batch["text"])[0, 0], base[0, 0], atol=1e-6)
    assert first_audio_changed == (attention == "bidirectional")
    # text stays causal in both modes: changing target token 2 leaves every earlier position unchanged
    text = batch["text"].clone()
    text[0, 2] = (text[0, 2] + 1) % 50
    start = 10 + int(batch["prompt_lengths"][0]) + 2
    changed = hidden(audio, text)
    torch.testing.assert_close(changed[0, :start], base[0, :start], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(changed[0, start], base[0, start], atol=1e-6)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_loss_falls_on_a_fixed_batch(tiny_init, attention):
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    model = build(args).train()
    _, _, batch = make_batch(args)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(50):
        loss = model(**batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def _step(model, args, batch, steps=3):
    [opt] = SpeechLMTask.build_optimizers(args, model)
    for _ in range(steps):
        loss = model(**batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def _freeze(model, prefixes):  # what ESPnet's main_worker does with --freeze_param
    for name, p in model.named_parameters():
        if any(name == t or name.startswith(t + ".") for t in prefixes):
            p.requires_grad = False


def test_stage1_trains_only_the_adapter_side(tiny_init):
    args = task_args(tiny_init, "--compressor", "conv1d", "--compressor_conf", "num_layers=1",
                     "--optim", "adamw", "--optim_conf", "lr=1.0e-3", "--freeze_param", "encoder", "decoder")
    model = build(args)
    _freeze(model, args.freeze_param)
    model.train()
    assert not model.encoder.training and not model.decoder.training and model.length_adapter.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, _, batch = make_batch(args)
    _step(model, args, batch)
    for name, p in model.named_parameters():
        if name.startswith(("encoder.", "decoder.")):
            assert p.grad is None and torch.equal(p, before[name]), name
    for module in ("compressor", "length_adapter", "projector"):
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n.startswith(module)), module


def test_stage2_trains_everything_with_one_lr_group_per_module(tiny_init):
    lrs = {"compressor": 2e-4, "length_adapter": 2e-4, "projector": 2e-4, "encoder": 6e-6, "decoder": 2e-5}
    args = task_args(tiny_init, "--compressor", "conv1d", "--optim", "adamw", "--optim_conf", "lr=1.0e-3",
                     *[x for k, v in lrs.items() for x in ("--optim_conf", f"param_groups.{k}={v!r}")])
    model = build(args).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, _, batch = make_batch(args)
    opt = _step(model, args, batch)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == lrs
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    for module in lrs:
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n.startswith(module)), module


def test_param_groups_naming_no_module_is_an_error(tiny_init):
    args = task_args(tiny_init, "--optim", "adamw", "--optim_conf", "param_groups.adaptor=2.0e-4")
    with pytest.raises(ValueError, match="names no module: \\['adaptor'\\]; modules are"):
        SpeechLMTask.build_optimizers(args, build(args))


@pytest.mark.parametrize("adapter", ["conformer", "w2v_bert_adapter", "linear"])
def test_save_then_load_gives_identical_logits(tiny_init, tmp_path, adapter):
    conf = ["--length_adapter_conf", "num_heads=4"] if adapter == "w2v_bert_adapter" else []
    args = task_args(tiny_init, "--length_adapter", adapter, "--compressor", "conv1d", *conf)
    if adapter == "linear":
        args.length_adapter_conf = {}
    model = build(args, seed=3).eval()
    _, _, batch = make_batch(args)
    expected, _ = model.logits(**batch)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    loaded, _ = SpeechLMTask.build_model_from_file(tmp_path / "config.yaml", tmp_path / "model.pth")
    actual, _ = loaded.eval().logits(**batch)
    assert torch.equal(actual, expected)


def test_unknown_component_lists_the_choices(tiny_init, capsys):
    with pytest.raises(SystemExit):
        task_args(tiny_init, "--length_adapter", "transformer")
    err = capsys.readouterr().err
    assert "transformer" in err and "conformer" in err and "w2v_bert_adapter" in err and "linear" in err


def test_bad_component_option_names_slot_and_key(tiny_init):
    args = task_args(tiny_init, "--length_adapter_conf", "num_layer=2")
    with pytest.raises(TypeError, match="--length_adapter_conf for 'conformer'.*num_layer"):
        build(args)


def test_model_path_neither_local_nor_reachable(tiny_init, tmp_path):
    from espnet_speechlm_plugin.model.hf import PretrainedNotFound

    args = task_args(tiny_init, "--encoder_conf", "name_or_path=some-org/no-such-encoder")
    with pytest.raises(PretrainedNotFound, match="speech encoder 'some-org/no-such-encoder'.*not a local directory"
                                                 ".*set name_or_path to DIR"):
        build(args)


def test_prompt_file_errors_name_file_and_line(tmp_path):
    from espnet_speechlm_plugin.vocab import PromptError, validate_prompt_file

    p = tmp_path / "prompt"
    p.write_text("a1 en transcribe\na2 de translate\na3 en summarise\n", encoding="utf-8")
    with pytest.raises(PromptError, match=f"{p} line 3 \\(utterance 'a3'\\): unknown task 'summarise'"):
        validate_prompt_file(str(p), ["en", "de"])
    p.write_text("a1 fr transcribe\n", encoding="utf-8")
    with pytest.raises(PromptError, match="line 1 .*unknown language 'fr'.*en, de"):
        validate_prompt_file(str(p), ["en", "de"])
    p.write_text("a1 en answer\n", encoding="utf-8")
    with pytest.raises(PromptError, match="line 1 .*needs a question"):
        validate_prompt_file(str(p), ["en"])


def test_preprocess_prompt_layout_and_length_hint(tiny_init):
    args = task_args(tiny_init, "--length_hint_prob", "1.0")
    tok = SpeechLMTask.tokenizer(args)
    train = SpeechLMTask.build_preprocess_fn(args, train=True)
    infer = SpeechLMTask.build_preprocess_fn(args, train=False)
    data = {"speech": np.zeros((5, 160), np.float32), "prompt": "de answer what colour is the cat", "text": "rot"}
    out = infer("u", dict(data))
    assert tok.convert_ids_to_tokens(out["prompt"][:2].tolist()) == ["<|de|>", "<|answer|>"]
    assert tok.decode(out["prompt"][2:]) == "what colour is the cat"
    assert tok.decode(out["text"][:-1]) == "rot" and out["text"][-1] == tok.eos_token_id
    hinted = train("u", dict(data, prompt="en transcribe"))
    assert tok.decode(hinted["prompt"][2:]) == "3"  # character count of "rot"
    assert tok.decode(infer("u", dict(data, prompt="en transcribe"))["prompt"][2:]) == ""


# ---- frame rates: SpecAugment at the encoder's input rate, the real configs' encoder settings on short clips ----
REAL_STAGE2 = sorted(p for p in (REPO / "conf").glob("stage2_*.yaml") if "tiny" not in p.name)
SHORT_CLIPS = (25, 40, 60)  # 0.5, 0.8 and 1.2 s of 50 Hz fbank, as short as the training mixes allow


@pytest.fixture(scope="module")
def real_encoder_tiny(tmp_path_factory):
    """w2v-BERT 2.0's published config (SpecAugment, conv kernel, relative positions …) at a tiny width/depth."""
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    from espnet_speechlm_plugin.bin import model_size

    config = Wav2Vec2BertConfig.from_pretrained(model_size.arch_path("facebook/w2v-bert-2.0"))
    assert (config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks) == (0.05, 10, 2)
    config.update(dict(hidden_size=64, output_hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128))
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("w2v_bert_real_settings")
    Wav2Vec2BertModel(config).save_pretrained(out)
    return out


def _encoder(path, rate):
    from espnet_speechlm_plugin.model.hf import W2VBertEncoder

    encoder = W2VBertEncoder(str(path))
    encoder.set_input_rate(rate)
    return encoder


def _masked_fraction(encoder, seconds, draws=300):
    np.random.seed(0)
    lengths = torch.tensor([int(np.ceil(s * encoder.input_rate)) for s in seconds])
    masked = sum(int(encoder.spec_augment_mask(lengths, int(lengths.max())).sum()) for _ in range(draws))
    return masked / (draws * int(lengths.sum()))


def test_spec_augment_span_is_kept_in_seconds(real_encoder_tiny):
    # HF's 10 frames at 50 Hz = 0.2 s: the same duration at each rate a compressor of k Conv1d layers gives
    assert [_encoder(real_encoder_tiny, 50 / 2 ** k).mask_time_span() for k in range(4)] == [10, 5, 3, 1]
    at_50, at_6 = _encoder(real_encoder_tiny, 50.0), _encoder(real_encoder_tiny, 6.25)
    for seconds in ([4.0, 4.0], [2.0, 3.0], [10.0, 12.0]):
        # the masked share of the audio is about HF's own at 50 Hz (2 spans minimum, then mask_time_prob 5 %) —
        # with HF's 10-frame span at 6.25 Hz it was 61 % of two 4 s clips
        assert abs(_masked_fraction(at_6, seconds) - _masked_fraction(at_50, seconds)) < 0.04, seconds
    assert _masked_fraction(at_6, [4.0, 4.0]) < 0.12
    assert _masked_fraction(at_6, [10.0, 12.0]) == pytest.approx(0.05, abs=0.01)


def test_spec_augment_at_50_hz_is_hf_own(real_encoder_tiny):
    encoder = _encoder(real_encoder_tiny, 50.0).train()
    feats, lengths = torch.randn(3, 60, 160), torch.tensor([60, 41, 12])
    mask = (torch.arange(60)[None] < lengths[:, None]).long()
    np.random.seed(3), torch.manual_seed(3)
    ours, _ = encoder(feats, lengths)
    np.random.seed(3), torch.manual_seed(3)
    hf = encoder.model(input_features=feats, attention_mask=mask).last_hidden_state
    assert torch.equal(ours, hf)
    # a batch shorter than one span: HF raises ValueError; here no frame is masked (as HF does to such an item
    # inside a longer batch)
    short = torch.tensor([7, 5])
    assert not encoder.spec_augment_mask(short, 7).any()
    out, _ = encoder(torch.randn(2, 7, 160), short)
    assert out.shape == (2, 7, 64)


@pytest.mark.parametrize("config", REAL_STAGE2, ids=lambda p: p.name)
def test_real_stage2_settings_train_on_short_clips(config, real_encoder_tiny, tiny_init):
    """The real config's compressor, encoder overrides and adapter (tiny widths) do a training step on 0.5-1.2 s."""
    from espnet_speechlm_plugin.bin import model_size

    args = model_size.parse_config(str(config))
    args.encoder_conf = dict(args.encoder_conf, name_or_path=str(real_encoder_tiny))
    args.decoder_conf = {"name_or_path": f"{tiny_init}/decoder"}
    args.length_adapter_conf = dict(args.length_adapter_conf, num_heads=4, ffn_dim=128)
    model = build(args).train()
    assert model.encoder.model.config.mask_time_prob > 0 and model.encoder.training
    expected = 50 / (2 ** args.compressor_conf["num_layers"] if args.compressor == "conv1d" else 1)
    assert model.encoder.input_rate == expected
    items = [(t, p, y) for t, (_, p, y) in zip(SHORT_CLIPS, ITEMS)]
    _, _, batch = make_batch(args, items)
    np.random.seed(0)
    loss = model(**batch)[0]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---- padding invariance of every adapter, with and without the compressor, once LayerNorm biases are trained ----
PAD_ITEMS = ITEMS + [(54, "it transcribe", "il gatto"), (53, "en translate", "the cat")]  # odd and even lengths


@pytest.mark.parametrize("compressor", ["none", "conv1d"])
@pytest.mark.parametrize("adapter", ["conformer", "w2v_bert_adapter", "linear"])
def test_every_adapter_is_padding_invariant_after_training(tiny_init, adapter, compressor):
    args = task_args(tiny_init, "--length_adapter", adapter, "--compressor", compressor)
    if adapter == "linear":
        args.length_adapter_conf = {}
    model = build(args).train()
    data, collate, batch = make_batch(args, PAD_ITEMS)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):  # moves every LayerNorm bias off zero: a zeroed pad frame no longer stays zero through one
        np.random.seed(0)
        loss = model(**batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    norms = [m for m in model.length_adapter.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(m.bias.abs().max() > 1e-3 for m in norms)
    model.eval()
    lengths = [int(n) for n in model.encode_speech(batch["speech"], batch["speech_lengths"])[1]]
    assert {n % 2 for n in lengths} == {0, 1}
    logits, _ = model.logits(**batch)
    for i, item in enumerate(data):
        alone, _ = model.logits(**collate([item])[1])
        torch.testing.assert_close(logits[i, : alone.size(1)], alone[0], atol=1e-5, rtol=1e-5)


def test_w2v_bert_adapter_computes_hf_own_forward_on_unpadded_input():
    from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertAdapter as HFAdapter

    from espnet_speechlm_plugin.model.adapters import W2VBertAdapter

    torch.manual_seed(0)
    ours = W2VBertAdapter(64, num_layers=2, num_heads=4, ffn_dim=128).eval()
    assert isinstance(ours.adapter, HFAdapter)
    with torch.no_grad():  # trained-looking LayerNorms
        for m in ours.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2), m.bias.normal_(0.0, 0.2)
    for t in (23, 24):
        x = torch.randn(2, t, 64)
        out, lengths = ours(x, torch.tensor([t, t]))
        hf = ours.adapter(x, attention_mask=torch.ones(2, t, dtype=torch.long))  # HF's own forward
        torch.testing.assert_close(out, hf, atol=1e-6, rtol=1e-6)
        assert lengths.tolist() == [hf.size(1)] * 2
    # HF's parameter names, so HF adapter weights load as they are
    assert set(ours.state_dict()) == {f"adapter.{k}" for k in HFAdapter(_hf_config(ours)).state_dict()}


def _hf_config(adapter):
    from transformers import Wav2Vec2BertConfig

    return Wav2Vec2BertConfig(hidden_size=64, output_hidden_size=64, num_attention_heads=4, intermediate_size=128,
                              num_adapter_layers=adapter.num_layers, adapter_stride=2, adapter_kernel_size=3)


def test_w2v_bert_adapter_rejects_strides_hf_counts_wrongly():
    from espnet_speechlm_plugin.model.adapters import W2VBertAdapter

    with pytest.raises(ValueError, match="kernel_size // 2 == stride // 2"):
        W2VBertAdapter(64, stride=4, kernel_size=3, num_heads=4)


@pytest.mark.slow
def test_real_size_stage2_step_on_short_clips():
    """REAL size (w2v-BERT 2.0 + Qwen2.5-0.5B, random weights): one stage-2 update on two short clips with every
    real setting on (SpecAugment, dropout, the config's optimizer). ~20 GB RSS: run alone
    (flock -x /tmp/heavy.lock pytest -m slow tests/test_model.py)."""
    from espnet_speechlm_plugin.bin import model_size

    args = model_size.meta_args(model_size.parse_config(str(REPO / "conf" / "stage2_qwen2.5-0.5b.yaml")))
    model = build(args).train()
    assert model.encoder.model.config.hidden_size == 1024 and model.encoder.model.config.mask_time_prob == 0.05
    [opt] = SpeechLMTask.build_optimizers(args, model)
    items = [(30, "en transcribe", "the red cat"), (55, "de translate", "die rote Katze")]  # 0.6 s and 1.1 s
    _, _, batch = make_batch(args, items)
    projector = model.projector.weight.detach().clone()
    np.random.seed(0)
    loss = model(**batch)[0]
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(model.projector.weight, projector)
