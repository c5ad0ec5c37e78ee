"""Batched KV-cache decoding for SpeechLM, greedy or beam search (the authors' ``generate`` never ran the encoder).

Where it sits: below the inference core (``espnet_speechlm_plugin/decoding.py``), which every decoding path uses
(recipe stage 5 ``bin/decode.py``, the task-confusion diagnostic, ``SpeechLMInference`` and the benchmarks); it
calls :func:`generate` on ESPnet-collated batches, or :func:`generate_from_audio` on audio embeddings it joined.

The prefix ``[A_i ; P_i]`` of every item is packed by ``SpeechLM.assemble``, the code that packs training batches
(pads at the end of each row), and run through the decoder once; then one token per step is appended for the whole
batch after the widest prefix, reusing the decoder's KV cache, with each row's own positions and its pad columns
masked. So the prefill's logits are the training forward's (``tests/test_generate.py`` checks it) and an utterance
decodes the same alone or in a batch. A sequence stops at <eos>, at its length budget (from its audio duration),
or when the repetition guard sees it looping.

Beam search (``GenerateConfig.beam_size > 1``) runs K rows per item through the same cache, reordered every step;
finished hypotheses are ranked by sum(log p) / length ** length_penalty, and an item stops once it has K of them
and no live beam could outrank the K-th. With ``beam_size 1`` it returns what greedy returns.

Speed (``bench/run.py --only P4 P8``: batched against one at a time, and against HF ``generate(inputs_embeds=…)``
on the same model): a batched step costs little more than a single one only if it does the same kind of work. On the bench's tiny model (CPU, one thread) a batch-16 step took 9.4 ms against 0.9 ms for one
utterance; it takes ~1.7 ms now. What cost, and what we do instead:

- the decoding mask: handed a 2-D padding mask, transformers rebuilds a (B, 1, 1, K) mask with ``torch.vmap`` on
  every step; we build it once per batch (``_Prefill.step_mask``, additive: torch's CPU sdpa would convert a
  boolean one on every call) and slice it, and pass none without pads;
- grouped-query attention under a mask: transformers' sdpa copies K/V to every query head whenever a mask is
  given (the whole cache, every layer, every step); ``_decoding_attention`` runs torch's sdpa with ``enable_gqa``
  instead, the path transformers already takes without a mask (a single utterance), same numbers;
- the KV cache: transformers' ``DynamicCache`` concatenates, i.e. copies the whole cache of every layer at every
  step (B times more bytes in a batch); ``_PreallocatedLayer`` writes each step into a buffer sized for the run;
- finished rows: a row that ends (<eos>, budget, repetition guard) leaves the batch and its cache at once (HF's
  ``generate`` keeps computing a finished row, padded, until the whole batch is done);
- the audio encoder: its (B, heads, T, T) attention tensors of a whole batch fall out of the CPU cache, so it runs
  on at most ``GenerateConfig.encoder_batch_size`` items at a time, each chunk cut to its own longest input.
"""

import contextlib
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Optional, Tuple

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
    beam_size: int = 1  # 1 = greedy
    length_penalty: float = 1.0  # beam search: rank finished hypotheses by sum(log p) / length ** this
    encoder_batch_size: int = 8  # the audio encoder sees at most this many items at once (0: the whole batch)


def _looping(seq: List[int], n: int, times: int) -> bool:
    for size in range(1, n + 1):
        if len(seq) >= size * times and all(seq[-size:] == seq[-size * (k + 1): len(seq) - size * k]
                                            for k in range(1, times)):
            return True
    return False


_GQA_SDPA = "speechlm_sdpa_gqa"  # our name for transformers' sdpa attention with torch's own GQA


def _sdpa_gqa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' ``sdpa_attention_forward`` minus its ``repeat_kv``: query (B, H, q, D), key/value
    (B, H_kv, K, D), H a multiple of H_kv; returns ((B, q, H, D), None) as every HF attention function does."""
    if attention_mask is not None and attention_mask.ndim == 4:
        attention_mask = attention_mask[:, :, :, : key.size(-2)]
    if is_causal is None:  # as transformers decides it: only an unmasked multi-token query is causal by flag
        is_causal = query.size(2) > 1 and attention_mask is None and getattr(module, "is_causal", True)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, is_causal=is_causal,
                                                           enable_gqa=query.size(1) != key.size(1))
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def _decoding_attention(model: SpeechLM) -> Iterator[bool]:
    """While decoding, run an sdpa decoder through ``_sdpa_gqa``; yields whether it does (other attention
    implementations, e.g. eager or flash_attention_2, are left alone and keep the 2-D step mask)."""
    config = getattr(getattr(model.decoder, "lm", None), "config", None)
    if config is None or config._attn_implementation != "sdpa":
        yield False
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(_GQA_SDPA, _sdpa_gqa)
    AttentionMaskInterface.register(_GQA_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # prefill masks as for sdpa
    config._attn_implementation = _GQA_SDPA
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"


def _preallocated_cache(capacity: int):
    """A ``DynamicCache`` whose layers are ``_PreallocatedLayer`` s of ``capacity`` positions."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class _PreallocatedLayer(DynamicLayer):
        """One layer's keys and values (B, H_kv, n, D) as views of a (B, H_kv, capacity, D) buffer: a step writes
        its new position in place instead of ``torch.cat``-ing a new copy of the cache."""

        def __init__(self):
            super().__init__()
            self.buffers = None  # (keys, values) buffers; self.keys/self.values are views of them

        def update(self, key_states, value_states, cache_kwargs=None):
            if not self.is_initialized:
                self.lazy_initialization(key_states)
            n, q = self.get_seq_length(), key_states.size(-2)
            if self.buffers is None or self.keys.data_ptr() != self.buffers[0].data_ptr() \
                    or n + q > self.buffers[0].size(-2):
                # first call, or the cache was replaced (beam search reorders / repeats rows) or is full: copy it
                # into a fresh buffer (a full one doubles, so growing stays linear)
                b, h, _, d = key_states.shape
                size = max(capacity, n + q) if self.buffers is None else max(capacity, 2 * (n + q))
                self.buffers = tuple(x.new_empty(b, h, size, d) for x in (key_states, value_states))
                if n:
                    self.buffers[0][:, :, :n] = self.keys
                    self.buffers[1][:, :, :n] = self.values
            self.buffers[0][:, :, n: n + q] = key_states
            self.buffers[1][:, :, n: n + q] = value_states
            self.keys, self.values = self.buffers[0][:, :, : n + q], self.buffers[1][:, :, : n + q]
            return self.keys, self.values

    cache = DynamicCache()
    cache.layer_class_to_replicate = _PreallocatedLayer  # layers are made on first use, one per decoder layer
    return cache


def encode_audio(model: SpeechLM, speech, speech_lengths, chunk: int = 0):
    """``model.encode_speech`` on at most ``chunk`` items at a time (0: all), right-padded back into one batch."""
    if chunk <= 0 or speech.size(0) <= chunk:
        return model.encode_speech(speech, speech_lengths)
    parts = []
    for s in range(0, speech.size(0), chunk):
        lengths = speech_lengths[s: s + chunk]
        parts.append(model.encode_speech(speech[s: s + chunk, : int(lengths.max())], lengths))
    width = max(x.size(1) for x, _ in parts)
    audio = torch.cat([torch.nn.functional.pad(x, (0, 0, 0, width - x.size(1))) for x, _ in parts])
    return audio, torch.cat([n for _, n in parts])  # (B, Ta, H_lm), (B,)


def length_budget(config: GenerateConfig, speech_lengths: torch.Tensor) -> torch.Tensor:
    """(B,) max new tokens per item: ``min_new_tokens + tokens_per_second × audio seconds``, at most
    ``max_new_tokens``; ``speech_lengths`` are input feature frames (all pieces of an item together)."""
    seconds = speech_lengths.float() / config.frame_rate
    return (config.min_new_tokens + config.tokens_per_second * seconds).long().clamp(max=config.max_new_tokens)


class _Prefill(NamedTuple):
    out: object  # decoder output: last_hidden_state (B, M, H_lm), past_key_values
    last: torch.Tensor  # (B, H_lm) hidden state at each row's last prefix position: it predicts the first token
    # mask over all keys a step can see, sliced per step to [..., : M + step + 1]: prefix validity, then ones for
    # generated tokens; (B, 1, 1, M + max budget) additive (0 or the dtype's min) for _sdpa_gqa,
    # (B, M + max budget) long for other attention implementations, None when no row has a pad (the cheapest path,
    # as for a single utterance)
    step_mask: Optional[torch.Tensor]
    prefix_lengths: torch.Tensor  # (B,) real prefix length = position of the first generated token
    budget: torch.Tensor  # (B,) max new tokens per item
    width: int  # M, the padded prefix length


def _prefill(model: SpeechLM, audio, audio_lengths, prompt, prompt_lengths, budget: torch.Tensor,
             mask_4d: bool) -> _Prefill:
    """Run the prefix ``[A_i ; P_i]`` of every item through the decoder once, packed by ``SpeechLM.assemble``
    exactly as in training (pads at the end of the row), and keep its KV cache for the steps.

    Generated tokens are written after the widest prefix (column M + step) at position ``m_i + step``; the step mask
    hides each row's pad columns m_i..M-1, so a row sees what it would see alone (rotary positions are carried by
    the position ids, not by the cache column)."""
    dev = audio.device
    embeds, prefill_mask, positions, _, m = model.assemble(audio, audio_lengths.to(dev), prompt.to(dev),
                                                          prompt_lengths.to(dev))  # (B, M, H_lm) ...
    b, big_m = embeds.shape[:2]
    budget = budget.to(dev)
    out = model.decoder.body(inputs_embeds=embeds, attention_mask=prefill_mask, position_ids=positions,
                             past_key_values=_preallocated_cache(big_m + int(budget.max())), use_cache=True)
    last = out.last_hidden_state[torch.arange(b, device=dev), m - 1]  # (B, H_lm)
    step_mask = None
    valid = positions < m[:, None]  # (B, M)
    if not bool(valid.all()):
        # one mask for the whole run, sliced per step (no per-step concatenation or mask building)
        step_mask = torch.cat([valid, valid.new_ones(b, int(budget.max()))], dim=1)  # (B, M + max budget)
        if mask_4d:  # additive: torch's CPU sdpa turns a boolean mask into this on every call (same numbers)
            step_mask = torch.zeros(step_mask.shape, dtype=embeds.dtype, device=dev).masked_fill_(
                ~step_mask, torch.finfo(embeds.dtype).min)[:, None, None, :]
        else:
            step_mask = step_mask.long()
    return _Prefill(out, last, step_mask, m, budget, big_m)


def _step(model: SpeechLM, out, step_mask: Optional[torch.Tensor], keys: int, positions: torch.Tensor,
          next_ids: torch.Tensor):
    """Feed one token per row (B,) at ``positions`` (B,) through the cached decoder, which then holds ``keys``."""
    mask = None if step_mask is None else step_mask[..., :keys]
    return model.decoder.body(inputs_embeds=model.decoder.embed(next_ids[:, None]), attention_mask=mask,
                              position_ids=positions[:, None], past_key_values=out.past_key_values, use_cache=True)


def _check(config: GenerateConfig) -> None:
    if config.beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {config.beam_size}")


@torch.no_grad()
def _search(model: SpeechLM, audio, audio_lengths, prompt, prompt_lengths, budget, config: GenerateConfig,
            beam: bool) -> Tuple[List[List[int]], Optional[List[float]]]:
    _check(config)
    model.eval()
    with _decoding_attention(model) as mask_4d:
        prefill = _prefill(model, audio, audio_lengths, prompt, prompt_lengths, budget, mask_4d)
        return _beam(model, prefill, config) if beam else (_greedy(model, prefill, config), None)


def generate_from_audio(model: SpeechLM, audio, audio_lengths, prompt, prompt_lengths, budget: torch.Tensor,
                        config: GenerateConfig = GenerateConfig()) -> List[List[int]]:
    """Decode from audio embeddings (B, Ta, H_lm) already encoded (e.g. the pieces of a long recording joined):
    token ids without <eos> per item, at most ``budget`` (B,) each; greedy when ``config.beam_size`` is 1, else
    beam search."""
    return _search(model, audio, audio_lengths, prompt, prompt_lengths, budget, config, config.beam_size > 1)[0]


@torch.no_grad()
def _encode_and_search(model: SpeechLM, speech, speech_lengths, prompt, prompt_lengths, config: GenerateConfig,
                       beam: bool):
    _check(config)
    model.eval()
    audio, audio_lengths = encode_audio(model, speech, speech_lengths, config.encoder_batch_size)
    budget = length_budget(config, speech_lengths.to(audio.device))
    return _search(model, audio, audio_lengths, prompt, prompt_lengths, budget, config, beam)


def generate(model: SpeechLM, speech, speech_lengths, prompt, prompt_lengths,
             config: GenerateConfig = GenerateConfig()) -> List[List[int]]:
    """Token ids (without <eos>) for every item of a padded batch, as ESPnet's collate makes it: greedy when
    ``config.beam_size`` is 1, else beam search."""
    return _encode_and_search(model, speech, speech_lengths, prompt, prompt_lengths, config,
                              config.beam_size > 1)[0]


def greedy_generate(model: SpeechLM, speech, speech_lengths, prompt, prompt_lengths,
                    config: GenerateConfig = GenerateConfig()) -> List[List[int]]:
    """Greedy decoding, whatever ``config.beam_size`` says."""
    return _encode_and_search(model, speech, speech_lengths, prompt, prompt_lengths, config, beam=False)[0]


def beam_generate(model: SpeechLM, speech, speech_lengths, prompt, prompt_lengths,
                  config: GenerateConfig = GenerateConfig(beam_size=4), return_scores: bool = False):
    """Beam search with ``config.beam_size`` beams (1 gives what greedy gives): the best hypothesis per item (token
    ids without <eos>); with ``return_scores`` also its sum of token log-probabilities (the <eos> included when the
    hypothesis ended with it)."""
    ids, scores = _encode_and_search(model, speech, speech_lengths, prompt, prompt_lengths, config, beam=True)
    return (ids, scores) if return_scores else ids


def _greedy(model: SpeechLM, prefill: _Prefill, config: GenerateConfig) -> List[List[int]]:
    out, last, step_mask, m, budget, big_m = prefill
    hyps: List[List[int]] = [[] for _ in range(m.size(0))]
    limits = budget.tolist()
    rows = list(range(m.size(0)))  # the item of each row still decoding
    for step in range(int(budget.max())):
        tokens = model.decoder.head(last).argmax(-1).tolist()  # (rows,)
        keep = []
        for r, (i, tok) in enumerate(zip(rows, tokens)):
            if tok == model.eos_id:
                continue
            hyps[i].append(tok)
            if len(hyps[i]) < limits[i] and not _looping(hyps[i], config.repeat_ngram, config.repeat_times):
                keep.append(r)
        if not keep:
            break
        if len(keep) < len(rows):  # drop finished rows from the batch (and the cache): no more steps for them
            idx = torch.tensor(keep, device=m.device)
            out.past_key_values.batch_select_indices(idx)
            m, step_mask = m[idx], None if step_mask is None else step_mask[idx]
            rows, tokens = [rows[r] for r in keep], [tokens[r] for r in keep]
        out = _step(model, out, step_mask, big_m + step + 1, m + step, torch.tensor(tokens, device=m.device))
        last = out.last_hidden_state[:, -1]
    return hyps


def _beam(model: SpeechLM, prefill: _Prefill, config: GenerateConfig) -> Tuple[List[List[int]], List[float]]:
    k = config.beam_size
    out, last, step_mask, m, budget, big_m = prefill
    b, dev = m.size(0), m.device
    out.past_key_values.batch_repeat_interleave(k)  # row b * K + j = beam j of item b
    m = m.repeat_interleave(k)  # beams of an item share its prefix
    if step_mask is not None:
        step_mask = step_mask.repeat_interleave(k, dim=0)
    limits = budget.tolist()
    # only beam 0 of an item is alive before the first token; -inf rows never win a top-k slot
    cum = torch.full((b, k), float("-inf"), device=dev)
    cum[:, 0] = 0.0
    cum = cum.flatten()  # (B K,)
    seqs: List[List[int]] = [[] for _ in range(b * k)]
    finished: List[List[Tuple[float, float, List[int]]]] = [[] for _ in range(b)]  # (ranking score, sum, ids)
    done = [False] * b

    def finish(item: int, total: float, seq: List[int], length: int) -> None:
        finished[item].append((total / max(length, 1) ** config.length_penalty, total, seq))

    last = last.repeat_interleave(k, dim=0)  # (B K, H_lm); the prefill ran B rows
    for step in range(int(budget.max())):
        logp = torch.log_softmax(model.decoder.head(last).float(), dim=-1)  # (B K, V)
        vocab = logp.size(-1)
        top_scores, top_idx = (cum[:, None] + logp).view(b, k * vocab).topk(2 * k, dim=-1)  # (B, 2K)
        top_scores, top_idx = top_scores.tolist(), top_idx.tolist()
        src = list(range(b * k))  # which row each new row continues (dead rows: themselves)
        next_tokens = [model.pad_id] * (b * k)
        new_cum = [float("-inf")] * (b * k)
        new_seqs: List[List[int]] = [[] for _ in range(b * k)]
        for item in range(b):
            if done[item]:
                continue
            alive = 0
            for total, flat in zip(top_scores[item], top_idx[item]):
                if total == float("-inf") or alive == k:
                    break
                row, tok = item * k + flat // vocab, flat % vocab
                if tok == model.eos_id:
                    finish(item, total, seqs[row], len(seqs[row]) + 1)
                    continue
                seq = seqs[row] + [tok]
                if len(seq) >= limits[item] or _looping(seq, config.repeat_ngram, config.repeat_times):
                    finish(item, total, seq, len(seq))
                    continue
                slot = item * k + alive
                src[slot], next_tokens[slot], new_cum[slot], new_seqs[slot] = row, tok, total, seq
                alive += 1
            # Stop once K hypotheses are finished and no live beam could still outrank the K-th of them (exact
            # with length_penalty 0, where scores only fall; HF's heuristic otherwise). Live beams share a length.
            if alive == 0:
                done[item] = True
            elif len(finished[item]) >= k:
                kth_best = sorted(rank for rank, _, _ in finished[item])[-k]
                done[item] = new_cum[item * k] / (step + 1) ** config.length_penalty <= kth_best
        if all(done):
            break
        seqs = new_seqs
        cum = torch.tensor(new_cum, device=dev)
        src_rows = torch.tensor(src, device=dev)
        out.past_key_values.reorder_cache(src_rows)
        out = _step(model, out, step_mask, big_m + step + 1, m + step, torch.tensor(next_tokens, device=dev))
        last = out.last_hidden_state[:, -1]
    else:  # only with a zero budget: every other item is done at its budget's last step
        for item in range(b):
            if not done[item]:
                for j in range(k):
                    if cum[item * k + j] > float("-inf"):
                        finish(item, float(cum[item * k + j]), seqs[item * k + j], len(seqs[item * k + j]))
    best = [max(hyps, key=lambda h: h[0]) for hyps in finished]
    return [seq for _, _, seq in best], [total for _, total, _ in best]
