"""SpeechLM: the whole speech-LLM network and its loss, as one ESPnet model.

::

    speech (B, T, 160) fbank @ 50 Hz
      └─ compressor   k × Conv1d(k3, s2)       (optional)   (B, T/2^k, 160)
      └─ encoder      w2v-BERT 2.0                            (B, T', H_enc)
      └─ length_adapter  Conformer / w2v-BERT adapter / linear (B, T'', H_enc)
      └─ projector    Linear(H_enc → H_lm)                    (B, T'', H_lm) = audio embeddings A
    prompt ids  <|lang|><|task|> [question]   → LM embeddings P
    text ids    target … <eos>                → LM embeddings Y
    per item:  [A_i ; P_i ; Y_i] packed left, pads only at the end of the row   (B, N, H_lm)
      └─ decoder (HF causal LM body) → hidden (B, N, H_lm) → LM head on target positions only → loss

Labels are -100 on audio, prompt and pads; every target token (the first included) and <eos> carry loss. An item's
loss and logits are the same alone or in any padded batch. ``audio_attention: bidirectional`` lets audio positions
attend to every audio position of their item; text stays causal.
"""

from typing import Dict, Optional, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from torch import nn

IGNORE_ID = -100


class SpeechLM(AbsESPnetModel):
    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        length_adapter: nn.Module,
        compressor: Optional[nn.Module] = None,
        pad_id: int = 0,
        eos_id: int = 0,
        audio_attention: str = "causal",
    ):
        super().__init__()
        if audio_attention not in ("causal", "bidirectional"):
            raise ValueError(f"model_conf.audio_attention must be 'causal' or 'bidirectional', got {audio_attention!r}")
        self.compressor = compressor
        self.encoder = encoder
        self.length_adapter = length_adapter
        self.projector = nn.Linear(encoder.output_size(), decoder.hidden_size())
        self.decoder = decoder
        self.pad_id, self.eos_id = pad_id, eos_id
        self.audio_attention = audio_attention

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True):
        """Frozen modules (every parameter ``requires_grad=False``, e.g. by ``--freeze_param``) stay in eval mode, so
        a frozen w2v-BERT does not apply SpecAugment, layerdrop or dropout."""
        super().train(mode)
        for module in (self.compressor, self.encoder, self.length_adapter, self.projector, self.decoder):
            params = list(module.parameters()) if module is not None else []
            if params and not any(p.requires_grad for p in params):
                module.eval()
        return self

    # ------------------------------------------------------------------ audio
    def encode_speech(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 160) fbank → audio embeddings (B, T'', H_lm) and their lengths (B,)."""
        x, lengths = speech, speech_lengths
        if self.compressor is not None:
            x, lengths = self.compressor(x, lengths)  # (B, T/2^k, 160)
        x, lengths = self.encoder(x, lengths)  # (B, T', H_enc)
        x, lengths = self.length_adapter(x, lengths)  # (B, T'', H_enc)
        return self.projector(x), lengths  # (B, T'', H_lm)

    # ------------------------------------------------------------------ packing
    def assemble(self, audio, audio_lengths, prompt, prompt_lengths, text=None, text_lengths=None):
        """Pack ``[A_i ; P_i ; Y_i]`` per item with pads at the end of the row.

        Returns inputs_embeds (B, N, H_lm), attention mask (2-D (B, N) for causal, additive 4-D (B, 1, N, N) for
        bidirectional), position ids (B, N), labels (B, N) and the row lengths (B,).
        """
        b = audio.size(0)
        if text is None:
            text = prompt.new_full((b, 1), self.pad_id)
            text_lengths = prompt_lengths.new_zeros(b)
        a, p, y = audio_lengths, prompt_lengths, text_lengths
        n = a + p + y
        pos = torch.arange(int(n.max()), device=audio.device)[None, :]  # (1, N)
        in_audio = pos < a[:, None]  # (B, N)
        in_prompt = ~in_audio & (pos < (a + p)[:, None])
        in_text = (pos >= (a + p)[:, None]) & (pos < n[:, None])
        prompt_ids = prompt.gather(1, (pos - a[:, None]).clamp(0, prompt.size(1) - 1))  # (B, N)
        text_ids = text.gather(1, (pos - (a + p)[:, None]).clamp(0, text.size(1) - 1))  # (B, N)
        ids = torch.where(in_prompt, prompt_ids, torch.where(in_text, text_ids, torch.full_like(text_ids, self.pad_id)))
        tokens = self.decoder.embed(ids)  # (B, N, H_lm)
        audio_idx = pos.clamp(max=audio.size(1) - 1).expand(b, -1)  # (B, N)
        audio_at = audio.gather(1, audio_idx[..., None].expand(-1, -1, audio.size(2)))  # (B, N, H_lm)
        embeds = torch.where(in_audio[..., None], audio_at.to(tokens.dtype), tokens)  # (B, N, H_lm)
        labels = torch.where(in_text, text_ids, torch.full_like(text_ids, IGNORE_ID))  # (B, N)
        valid = pos < n[:, None]  # (B, N)
        return embeds, self.attention_mask(valid, in_audio, embeds.dtype), pos.expand(b, -1), labels, n

    def attention_mask(self, valid: torch.Tensor, in_audio: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.audio_attention == "causal":
            return valid.long()  # (B, N): HF adds the causal part
        n = valid.size(1)
        causal = torch.ones(n, n, dtype=torch.bool, device=valid.device).tril()  # (N, N) query × key
        audio_block = in_audio[:, :, None] & in_audio[:, None, :]  # (B, N, N)
        # pad queries (right pads in training, left pads in generate.py) keep their causal row, so no row is empty
        # (an empty row would make NaNs in softmax)
        allowed = (causal & (valid[:, None, :] | ~valid[:, :, None])) | audio_block  # (B, N, N)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=valid.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]  # (B, 1, N, N)

    # ------------------------------------------------------------------ forward
    def hidden_states(self, speech, speech_lengths, prompt, prompt_lengths, text=None, text_lengths=None):
        audio, audio_lengths = self.encode_speech(speech, speech_lengths)
        embeds, mask, positions, labels, n = self.assemble(
            audio, audio_lengths, prompt, prompt_lengths, text, text_lengths
        )
        out = self.decoder.body(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False)
        return out.last_hidden_state, labels, n  # (B, N, H_lm), (B, N), (B,)

    def logits(self, speech, speech_lengths, prompt, prompt_lengths, text=None, text_lengths=None):
        """Full logits (B, N, V) and labels (B, N); for tests and diagnostics (training uses only target rows)."""
        hidden, labels, _ = self.hidden_states(speech, speech_lengths, prompt, prompt_lengths, text, text_lengths)
        return self.decoder.head(hidden), labels

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        prompt: torch.Tensor,
        prompt_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        hidden, labels, _ = self.hidden_states(speech, speech_lengths, prompt, prompt_lengths, text, text_lengths)
        # position t predicts token t+1: keep only rows whose next token is a target, then apply the LM head
        targets = labels[:, 1:]  # (B, N-1)
        keep = targets != IGNORE_ID  # (B, N-1)
        logits = self.decoder.head(hidden[:, :-1][keep]).float()  # (M, V), M = number of target tokens
        gold = targets[keep]  # (M,)
        loss = nn.functional.cross_entropy(logits, gold, reduction="mean")
        acc = (logits.argmax(-1) == gold).float().mean()
        stats = dict(loss=loss.detach(), acc=acc.detach())
        # the weight is the number of target tokens the mean is over: ESPnet weighs each DDP rank's loss by it, so
        # N ranks together take the same step as one process on the union batch (a token mean over all of it)
        return force_gatherable((loss, stats, torch.tensor(gold.numel())), loss.device)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        return {"feats": speech, "feats_lengths": speech_lengths}
