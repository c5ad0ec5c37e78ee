"""Batched greedy decoding with a KV cache for SpeechLM (the authors' ``generate`` never ran the encoder).

Each item's prefix ``[A_i ; P_i]`` is LEFT-padded so that every row ends at the same column; then one token per
step is appended for the whole batch, reusing the decoder's KV cache. Positions restart at 0 for every item, so
an utterance decodes the same alone or in a batch. A sequence stops at <eos>, at its length budget (from its audio
duration), or when the repetition guard sees it looping.
"""

from dataclasses import dataclass
from typing import List

import torch

from espnet_speechlm_plugin.model.speechlm import SpeechLM


@dataclass
class GenerateConfig:
    max_new_tokens: int = 200
    tokens_per_second: float = 15.0  # budget = min(max_new_tokens, min_new_tokens + rate × audio seconds)
    min_new_tokens: int = 16
    frame_rate: float = 50.0  # input feature frames per second
    repeat_ngram: int = 4  # stop a sequence whose last n-gram has occurred this many times in a row
    repeat_times: int = 4


def _looping(seq: List[int], n: int, times: int) -> bool:
    for size in range(1, n + 1):
        if len(seq) >= size * times and all(seq[-size:] == seq[-size * (k + 1): len(seq) - size * k]
                                            for k in range(1, times)):
            return True
    return False


@torch.no_grad()
def greedy_generate(model: SpeechLM, speech, speech_lengths, prompt, prompt_lengths,
                    config: GenerateConfig = GenerateConfig()) -> List[List[int]]:
    """Token ids (without <eos>) for every item of a padded batch, as ESPnet's collate makes it."""
    from transformers import DynamicCache

    model.eval()
    audio, a = model.encode_speech(speech, speech_lengths)  # (B, Ta, H_lm), (B,)
    b, dev = audio.size(0), audio.device
    p = prompt_lengths.to(dev)
    m = a + p  # prefix length per item
    big_m = int(m.max())
    col = torch.arange(big_m, device=dev)[None, :]  # (1, M)
    start = (big_m - m)[:, None]  # first real column per row
    rel = col - start  # position within the item, negative on left pads
    in_audio = (rel >= 0) & (rel < a[:, None])  # (B, M)
    in_prompt = (rel >= a[:, None]) & (rel < m[:, None])
    valid = rel >= 0
    prompt_ids = prompt.to(dev).gather(1, (rel - a[:, None]).clamp(0, prompt.size(1) - 1))  # (B, M)
    ids = torch.where(in_prompt, prompt_ids, torch.full_like(prompt_ids, model.pad_id))
    tokens = model.decoder.embed(ids)  # (B, M, H_lm)
    audio_at = audio.gather(1, rel.clamp(0, audio.size(1) - 1)[..., None].expand(-1, -1, audio.size(2)))
    embeds = torch.where(in_audio[..., None], audio_at.to(tokens.dtype), tokens)  # (B, M, H_lm)
    positions = rel.clamp(min=0)  # (B, M)

    prefill_mask = model.attention_mask(valid, in_audio, embeds.dtype)  # (B, M) or (B, 1, M, M)

    seconds = speech_lengths.to(dev).float() / config.frame_rate
    budget = (config.min_new_tokens + config.tokens_per_second * seconds).long().clamp(max=config.max_new_tokens)
    cache = DynamicCache()
    out = model.decoder.body(inputs_embeds=embeds, attention_mask=prefill_mask, position_ids=positions,
                             past_key_values=cache, use_cache=True)
    attn = valid.long()  # 2-D mask grows by one column per step
    hyps: List[List[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    for step in range(int(budget.max())):
        next_ids = model.decoder.head(out.last_hidden_state[:, -1]).argmax(-1)  # (B,)
        for i in (~done).nonzero().flatten().tolist():
            tok = int(next_ids[i])
            if tok == model.eos_id:
                done[i] = True
                continue
            hyps[i].append(tok)
            if len(hyps[i]) >= int(budget[i]) or _looping(hyps[i], config.repeat_ngram, config.repeat_times):
                done[i] = True
        if bool(done.all()):
            break
        next_ids = next_ids.masked_fill(done, model.pad_id)
        attn = torch.cat([attn, torch.ones(b, 1, dtype=attn.dtype, device=dev)], dim=1)  # (B, M+step+1)
        out = model.decoder.body(inputs_embeds=model.decoder.embed(next_ids[:, None]), attention_mask=attn,
                                 position_ids=(m + step)[:, None], past_key_values=out.past_key_values,
                                 use_cache=True)
    return hyps
