"""Batched KV-cache greedy decoding: same as teacher-forced argmax, same alone or batched, both attention modes."""

import pytest
import torch
from conftest import task_args
from test_model import make_batch

from espnet_speechlm_plugin.model.generate import GenerateConfig, _looping, greedy_generate
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
