"""Batched KV-cache decoding: the prefill and every cached step give the training forward's logits, greedy equals
teacher-forced argmax, same alone or batched, beam search, both attention modes."""

import pytest
import torch
from conftest import task_args
from test_model import make_batch

from espnet_speechlm_plugin.model.generate import (GenerateConfig, _decoding_attention, _looping,
                                                   _preallocated_cache, _prefill, _step, beam_generate, encode_audio,
                                                   generate, greedy_generate)
from espnet_speechlm_plugin.tasks.speechlm import SpeechLMTask


def overfit(args, batch, steps=80):
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(**batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_prefill_and_cached_steps_give_the_training_forward_logits(tiny_init, attention):
    """Decoding packs its prefix with the training code (SpeechLM.assemble): in a padded batch, the prefill's logits
    at every audio and prompt position, and those of each cached step fed the target tokens, equal the logits of the
    training forward (SpeechLM.logits) on the same items."""
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    _, _, batch = make_batch(args)
    model = overfit(args, batch, steps=3)  # trained a little: no parameter keeps its initial value
    logits, _ = model.logits(**batch)  # (B, N, V), training's packing and mask
    text, text_lengths = batch["text"], batch["text_lengths"]
    with torch.no_grad(), _decoding_attention(model) as mask_4d:
        audio, audio_lengths = encode_audio(model, batch["speech"], batch["speech_lengths"])
        prefill = _prefill(model, audio, audio_lengths, batch["prompt"], batch["prompt_lengths"], text_lengths,
                           mask_4d)
        m = prefill.prefix_lengths
        assert len(set(m.tolist())) > 1 and (prefill.step_mask is not None)  # a padded batch
        out, steps = prefill.out, [model.decoder.head(prefill.last)]
        for t in range(text.size(1) - 1):  # teacher forcing through the KV cache
            out = _step(model, out, prefill.step_mask, prefill.width + t + 1, m + t, text[:, t])
            steps.append(model.decoder.head(out.last_hidden_state[:, -1]))
        prefix_logits = model.decoder.head(prefill.out.last_hidden_state)  # (B, M, V)
    steps = torch.stack(steps, dim=1)  # (B, Y, V): row t predicts target token t
    for i, (mi, yi) in enumerate(zip(m.tolist(), text_lengths.tolist())):
        torch.testing.assert_close(prefix_logits[i, :mi], logits[i, :mi], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(steps[i, :yi], logits[i, mi - 1: mi - 1 + yi], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_greedy_matches_teacher_forcing_and_is_batch_invariant(tiny_init, attention):
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    data, collate, batch = make_batch(args)
    model = overfit(args, batch)
    hyps = greedy_generate(model, batch["speech"], batch["speech_lengths"], batch["prompt"], batch["prompt_lengths"])
    # after overfitting, decoding reproduces the memorised targets exactly (their argmax path)
    for i, hyp in enumerate(hyps):
        target = batch["text"][i, : batch["text_lengths"][i] - 1].tolist()
        assert hyp == target
    for i, item in enumerate(data):
        one = collate([item])[1]
        assert greedy_generate(model, one["speech"], one["speech_lengths"], one["prompt"], one["prompt_lengths"]) \
            == [hyps[i]]


def test_length_budget_and_repetition_guard(tiny_init):
    args = task_args(tiny_init)
    _, _, batch = make_batch(args)
    torch.manual_seed(0)
    model = SpeechLMTask.build_model(args).eval()  # untrained: never says <eos> on purpose
    cfg = GenerateConfig(max_new_tokens=7, min_new_tokens=7, tokens_per_second=0.0, repeat_times=100)
    hyps = greedy_generate(model, batch["speech"], batch["speech_lengths"], batch["prompt"], batch["prompt_lengths"],
                           cfg)
    assert all(len(h) <= 7 for h in hyps) and any(len(h) == 7 for h in hyps)
    assert _looping([5, 1, 2, 1, 2, 1, 2, 1, 2], n=4, times=4)
    assert _looping([3, 3, 3, 3], n=1, times=4)
    assert not _looping([1, 2, 3, 1, 2, 3, 1, 2], n=4, times=3)


def teacher_forced_logprob(model, one, hyp, eos_id):
    """sum log p(hyp + <eos>) under teacher forcing, from the full-sequence logits of SpeechLM.logits."""
    target = torch.tensor([hyp + [eos_id]])
    model.eval()
    logits, labels = model.logits(one["speech"], one["speech_lengths"], one["prompt"], one["prompt_lengths"],
                                  target, torch.tensor([target.size(1)]))
    logp = torch.log_softmax(logits[0, :-1].float(), -1)  # position t predicts token t+1
    keep = labels[0, 1:] != -100
    return float(logp[keep].gather(1, labels[0, 1:][keep][:, None]).sum().detach())


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_beam_search(tiny_init, attention):
    args = task_args(tiny_init, "--model_conf", f"audio_attention={attention}")
    data, collate, batch = make_batch(args)
    model = overfit(args, batch, steps=30)  # half-trained: the beams disagree with greedy now and then
    inputs = (batch["speech"], batch["speech_lengths"], batch["prompt"], batch["prompt_lengths"])
    cfg = GenerateConfig(max_new_tokens=12, repeat_times=100)
    greedy = greedy_generate(model, *inputs, cfg)
    assert beam_generate(model, *inputs, GenerateConfig(max_new_tokens=12, repeat_times=100, beam_size=1)) == greedy
    beam_cfg = GenerateConfig(max_new_tokens=12, repeat_times=100, beam_size=3, length_penalty=0.0)
    hyps, scores = beam_generate(model, *inputs, beam_cfg, return_scores=True)
    assert generate(model, *inputs, beam_cfg) == hyps
    checked = 0
    for i, item in enumerate(data):
        one = collate([item])[1]
        single = (one["speech"], one["speech_lengths"], one["prompt"], one["prompt_lengths"])
        assert beam_generate(model, *single, beam_cfg) == [hyps[i]]  # batch invariant
        if len(hyps[i]) < 12:  # ended with <eos>: the reported score is the teacher-forced one (cache reordering)
            assert scores[i] == pytest.approx(teacher_forced_logprob(model, one, hyps[i], model.eos_id), abs=1e-3)
            checked += 1
    assert checked > 0
    assert hyps != greedy  # the half-trained model makes the beam matter (else this test would show little)
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        generate(model, *inputs, GenerateConfig(beam_size=0))


def test_batched_fast_paths_change_nothing(tiny_init):
    """Encoder chunks, the preallocated cache, dropping finished rows and the GQA sdpa give what the plain path
    gives: the same hypotheses as every item alone, and the decoder's attention setting is restored."""
    args = task_args(tiny_init)
    data, collate, batch = make_batch(args)
    model = overfit(args, batch, steps=30)
    inputs = (batch["speech"], batch["speech_lengths"], batch["prompt"], batch["prompt_lengths"])
    with torch.no_grad():
        whole, n_whole = model.encode_speech(batch["speech"], batch["speech_lengths"])
        chunked, n_chunked = encode_audio(model, batch["speech"], batch["speech_lengths"], chunk=3)
    assert n_chunked.tolist() == n_whole.tolist()
    for i, n in enumerate(n_whole.tolist()):
        torch.testing.assert_close(chunked[i, :n], whole[i, :n], atol=1e-4, rtol=1e-4)
    cfg = GenerateConfig(max_new_tokens=12, repeat_times=100, encoder_batch_size=3)
    hyps = greedy_generate(model, *inputs, cfg)
    assert len({len(h) for h in hyps}) > 1  # rows finish at different steps: the batch shrinks as they do
    assert model.decoder.lm.config._attn_implementation == "sdpa"
    for i, item in enumerate(data):
        one = collate([item])[1]
        assert greedy_generate(model, one["speech"], one["speech_lengths"], one["prompt"], one["prompt_lengths"],
                               cfg) == [hyps[i]]
    assert greedy_generate(model, *inputs, GenerateConfig(max_new_tokens=12, repeat_times=100,
                                                           encoder_batch_size=0)) == hyps
    cache = _preallocated_cache(capacity=4)  # grows past its capacity when it has to
    k = torch.randn(2, 2, 3, 8)
    cache.update(k, k, 0)
    keys, _ = cache.update(k, k, 0)
    assert torch.equal(keys, torch.cat([k, k], dim=2))
