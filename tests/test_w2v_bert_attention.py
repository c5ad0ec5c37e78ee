"""The efficient w2v-BERT self-attention (model/w2v_bert_attention.py) against HF's own Wav2Vec2BertSelfAttention.

Tiny models, but w2v-BERT 2.0's real distance clamp (64 to the left, 8 to the right): lengths below, at and far
beyond it, padded batches, train and eval mode, gradients, whole models and checkpoints loaded from disk.
"""

import copy

import pytest
import torch
from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel
from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertSelfAttention

from espnet_speechlm_plugin.model.hf import W2VBertEncoder
from espnet_speechlm_plugin.model.w2v_bert_attention import RelativeKeySelfAttention, use_efficient_attention

LEFT, RIGHT = 64, 8  # w2v-BERT 2.0's clamp (espnet_speechlm_plugin/arch/w2v-bert-2.0/config.json)


def tiny_config(**overrides):
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              output_hidden_size=32, feature_projection_input_dim=160, conv_depthwise_kernel_size=5,
              left_max_position_embeddings=LEFT, right_max_position_embeddings=RIGHT, mask_time_prob=0.0,
              layerdrop=0.0, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
              feat_proj_dropout=0.0, conformer_conv_dropout=0.0)
    kw.update(overrides)
    return Wav2Vec2BertConfig(**kw)


def tiny_model(seed=0, **overrides):
    """A random tiny w2v-BERT with unit-scale activations and scores (HF's initialisation gives attention outputs
    of ~1e-3, which would make a 1e-5 tolerance meaningless) and distance embeddings that matter."""
    torch.manual_seed(seed)
    model = Wav2Vec2BertModel(tiny_config(**overrides))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)
            if isinstance(module, Wav2Vec2BertSelfAttention) and hasattr(module, "distance_embedding"):
                module.distance_embedding.weight.normal_(0.0, 1.0)
    return model


def padded_batch(lengths, seed=1, dim=160):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), max(lengths), dim, generator=g)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    return feats, mask.long()


def attention_inputs(model, feats, mask):
    """What HF's encoder hands its first self-attention module: the hidden states and HF's own 4-D mask."""
    seen = {}

    def grab(module, args, kwargs):
        seen.setdefault("hidden", kwargs.get("hidden_states", args[0] if args else None))
        seen.setdefault("mask", kwargs.get("attention_mask"))

    handle = model.encoder.layers[0].self_attn.register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_features=feats, attention_mask=mask)
    handle.remove()
    return seen["hidden"].detach(), seen["mask"]


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def run_module(module, hidden, mask):
    """Output, input gradient and parameter gradients of a weighted sum of every output (padded rows too)."""
    module.zero_grad()
    x = hidden.clone().requires_grad_(True)
    out = module(x, attention_mask=mask)[0]
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), x.grad, grads(module)


@pytest.mark.parametrize("lengths", [[5, 3], [9, 9], [LEFT + 1, 40], [RIGHT + LEFT + 1, 73, 2], [300, 211, 64]])
@pytest.mark.parametrize("block_elements", [2**23, 256])  # one SDPA call, or blocks of a few query rows
def test_module_equals_hf_train_and_eval(lengths, block_elements):
    model = tiny_model()
    hf = model.encoder.layers[0].self_attn
    ours = RelativeKeySelfAttention.from_hf(copy.deepcopy(hf), model.config)
    ours.block_elements = block_elements
    hidden, mask = attention_inputs(model, *padded_batch(lengths))
    assert mask is not None and mask.shape == (len(lengths), 1, max(lengths), max(lengths))
    # HF's module in float64: the yardstick for gradients, which sum over every (query, key) pair in an order
    # that differs between any two implementations
    _, _, exact = run_module(copy.deepcopy(hf).double(), hidden.double(), mask.double())
    for train in (True, False):
        hf.train(train), ours.train(train)
        hf_out, hf_in, hf_grads = run_module(hf, hidden, mask)
        our_out, our_in, our_grads = run_module(ours, hidden, mask)
        assert (hf_out - our_out).abs().max() <= 1e-5, f"train={train}"
        assert (hf_in - our_in).abs().max() <= 1e-5 * max(1.0, hf_in.abs().max())
        assert hf_grads.keys() == our_grads.keys() and "distance_embedding.weight" in our_grads
        for name, g in hf_grads.items():
            hf_error = (g.double() - exact[name]).abs().max()
            our_error = (our_grads[name].double() - exact[name]).abs().max()
            assert our_error <= 2 * hf_error + 1e-5 * max(1.0, g.abs().max()), name


def test_position_term_matters():
    """The fixture is sensitive: HF's output moves far more than the tolerance when the position term is dropped."""
    model = tiny_model().eval()
    hf = model.encoder.layers[0].self_attn
    hidden, mask = attention_inputs(model, *padded_batch([120, 80]))
    with torch.no_grad():
        before = hf(hidden, attention_mask=mask)[0]
        hf.distance_embedding.weight.zero_()
        after = hf(hidden, attention_mask=mask)[0]
    assert (before - after).abs().max() > 1e-2


def test_whole_model_and_gradient_checkpointing_equal_hf():
    lengths = [150, 90, 20]
    feats, mask = padded_batch(lengths)
    hf = tiny_model()
    ours = copy.deepcopy(hf)
    assert use_efficient_attention(ours) == 2
    assert all(type(layer.self_attn) is RelativeKeySelfAttention for layer in ours.encoder.layers)
    for train, checkpointing in [(False, False), (True, False), (True, True)]:
        if checkpointing:  # HF's own layer checkpointing around ours
            ours.gradient_checkpointing_enable()
        results = []
        for model in (hf, ours):
            model.train(train)
            model.zero_grad()
            x = feats.clone().requires_grad_(True)
            out = model(input_features=x, attention_mask=mask).last_hidden_state
            out[mask.bool()].pow(2).sum().backward()
            results.append((out.detach(), x.grad, grads(model)))
        (hf_out, hf_in, hf_g), (our_out, our_in, our_g) = results
        valid = mask.bool()
        assert (hf_out[valid] - our_out[valid]).abs().max() <= 1e-5
        assert (hf_out - our_out).abs().max() <= 1e-5  # padded frames too
        assert (hf_in - our_in).abs().max() <= 1e-5
        assert hf_g.keys() == our_g.keys()
        for name in hf_g:
            assert (hf_g[name] - our_g[name]).abs().max() <= 1e-4 * max(1.0, hf_g[name].abs().max()), name


def test_encoder_option_loads_checkpoint_with_identical_keys(tmp_path):
    tiny_model(seed=3).save_pretrained(tmp_path / "enc")
    reference = Wav2Vec2BertModel.from_pretrained(tmp_path / "enc").eval()
    efficient = W2VBertEncoder(str(tmp_path / "enc")).eval()
    plain = W2VBertEncoder(str(tmp_path / "enc"), attention="hf").eval()
    assert type(efficient.model.encoder.layers[0].self_attn) is RelativeKeySelfAttention
    assert type(plain.model.encoder.layers[0].self_attn) is Wav2Vec2BertSelfAttention
    ref_state = reference.state_dict()
    for encoder in (efficient, plain):
        state = encoder.model.state_dict()
        assert list(state) == list(ref_state)
        assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
    # a state dict saved from the efficient encoder loads strictly into HF's, and back
    plain.load_state_dict(efficient.state_dict(), strict=True)
    efficient.load_state_dict(plain.state_dict(), strict=True)
    feats, mask = padded_batch([300, 100])
    lengths = mask.sum(1)
    with torch.no_grad():
        a, la = efficient(feats, lengths)
        b, lb = plain(feats, lengths)
    assert torch.equal(la, lb) and (a - b).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="encoder_conf.attention"):
        W2VBertEncoder(str(tmp_path / "enc"), attention="flash")


def test_output_attentions_are_hfs():
    feats, mask = padded_batch([100, 70])
    hf = tiny_model().eval()
    ours = copy.deepcopy(hf)
    use_efficient_attention(ours)
    with torch.no_grad():
        a = hf(input_features=feats, attention_mask=mask, output_attentions=True)
        b = ours(input_features=feats, attention_mask=mask, output_attentions=True)
        c = ours(input_features=feats, attention_mask=mask)
    assert len(a.attentions) == len(b.attentions) == 2
    assert all(torch.equal(x, y) for x, y in zip(a.attentions, b.attentions))
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)
    assert (c.last_hidden_state - a.last_hidden_state).abs().max() <= 1e-5


@pytest.mark.parametrize("position", ["rotary", "relative", None])
def test_other_position_encodings_keep_hfs_module(position):
    model = tiny_model(position_embeddings_type=position, add_adapter=True, num_adapter_layers=1)
    assert use_efficient_attention(model) == 0
    assert all(type(m) is Wav2Vec2BertSelfAttention for m in model.modules() if isinstance(m, Wav2Vec2BertSelfAttention))


def test_adapter_attention_stays_hfs():
    model = tiny_model(add_adapter=True, num_adapter_layers=1)
    assert use_efficient_attention(model) == 2  # the encoder's two layers, not the adapter's (no positions)
    assert type(model.adapter.layers[0].self_attn) is Wav2Vec2BertSelfAttention


def test_dropout_in_train_mode_only():
    model = tiny_model(attention_dropout=0.5)
    hf = model.encoder.layers[0].self_attn
    ours = RelativeKeySelfAttention.from_hf(copy.deepcopy(hf), model.config)
    ours.block_elements = 4 * 4 * 50  # several blocks: each replays its own RNG state in backward
    hidden, mask = attention_inputs(model, *padded_batch([200, 120]))
    hf.eval(), ours.eval()
    with torch.no_grad():
        assert (hf(hidden, attention_mask=mask)[0] - ours(hidden, attention_mask=mask)[0]).abs().max() <= 1e-5
    ours.train()
    torch.manual_seed(5)
    with torch.no_grad():
        no_grad_out = ours(hidden, attention_mask=mask)[0]
    torch.manual_seed(5)
    x = hidden.clone().requires_grad_(True)
    out = ours(x, attention_mask=mask)[0]
    assert torch.equal(out, no_grad_out)  # the same dropout masks with and without autograd
    ours.eval()
    with torch.no_grad():
        assert (out - ours(hidden, attention_mask=mask)[0]).abs().max() > 1e-2  # dropout did act
    # the gradient is the one of the function that produced `out`: a finite difference along a random direction
    ours.train()
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    direction = torch.randn_like(hidden)
    eps = 1e-3
    values = []
    for sign in (1, -1):
        torch.manual_seed(5)
        with torch.no_grad():
            values.append((ours(hidden + sign * eps * direction, attention_mask=mask)[0]
                           * weights).sum().double())
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = (x.grad * direction).sum().double()
    assert abs(numeric - analytic) <= 2e-2 * max(1.0, abs(analytic))


def test_bfloat16_close_to_hf():
    model = tiny_model()
    hf = model.encoder.layers[0].self_attn
    ours = RelativeKeySelfAttention.from_hf(copy.deepcopy(hf), model.config).to(torch.bfloat16).eval()
    feats, mask = padded_batch([160, 100])
    hidden, mask32 = attention_inputs(model, feats, mask)
    with torch.no_grad():
        reference = copy.deepcopy(hf).eval()(hidden, attention_mask=mask32)[0]  # fp32
    _, mask16 = attention_inputs(model.to(torch.bfloat16), feats.bfloat16(), mask)  # HF's mask in bf16
    assert mask16.dtype == torch.bfloat16
    with torch.no_grad():
        hf16 = hf.eval()(hidden.bfloat16(), attention_mask=mask16)[0]
        ours16 = ours(hidden.bfloat16(), attention_mask=mask16)[0]
    assert ours16.dtype == hf16.dtype == torch.bfloat16 and torch.isfinite(ours16).all()
    hf_error = (hf16.float() - reference).abs().max()
    our_error = (ours16.float() - reference).abs().max()
    assert 0 < hf_error < 0.1 and our_error <= 2 * hf_error  # no worse than HF's own bf16 rounding


@pytest.mark.slow
def test_real_size_layer_equals_hf():
    """w2v-BERT 2.0's own architecture (1024 wide, 16 heads of 64), one encoder layer, 20 s and 13 s in one batch,
    train mode: outputs and gradients equal HF's. About 10 s and 2 GB on one core."""
    from pathlib import Path

    from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertEncoderLayer

    import espnet_speechlm_plugin

    arch = Path(espnet_speechlm_plugin.__file__).parent / "arch/w2v-bert-2.0"
    config = Wav2Vec2BertConfig.from_pretrained(arch, conformer_conv_dropout=0.0)
    torch.manual_seed(0)
    hf_layer = Wav2Vec2BertEncoderLayer(config).train()
    our_layer = copy.deepcopy(hf_layer)
    assert use_efficient_attention(our_layer, config) == 1
    lengths = [1000, 650]  # 50 Hz frames
    hidden = torch.randn(2, max(lengths), config.hidden_size)
    valid = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    mask = ((1.0 - valid[:, None, None, :].float()) * torch.finfo(torch.float32).min).expand(2, 1, 1000, 1000)
    weights = torch.randn(2, max(lengths), config.hidden_size)
    results = []
    for layer in (hf_layer, our_layer):
        x = hidden.clone().requires_grad_(True)
        out = layer(x, attention_mask=mask, conv_attention_mask=valid)[0]
        (out * weights).sum().backward()
        results.append((out.detach(), x.grad, grads(layer)))
    (hf_out, hf_in, hf_g), (our_out, our_in, our_g) = results
    assert (hf_out - our_out).abs().max() <= 1e-5
    assert (hf_in - our_in).abs().max() <= 1e-5 * max(1.0, hf_in.abs().max())
    for name, g in hf_g.items():
        assert (g - our_g[name]).abs().max() <= 1e-4 * max(1.0, g.abs().max()), name
