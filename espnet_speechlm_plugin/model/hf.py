"""The HF side of the model: loading pretrained checkpoints, the speech encoders and the causal-LM decoder.

Everything is loaded with ``from_pretrained(name_or_path)``: a hub name for real runs, a local directory (what
tests and the CPU demo make with ``save_pretrained``) otherwise. Nothing here runs remote code.
The decoder can train through LoRA (``decoder_conf.lora``, see ``LoRALinear``) instead of all its weights.
"""

import math
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class PretrainedNotFound(OSError):
    pass


def from_pretrained(loader, name_or_path: str, what: str, **kwargs):
    """``loader.from_pretrained`` with an error that says what failed and how to use a local copy."""
    try:
        return loader.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)
    except (OSError, ValueError) as e:  # HF raises OSError (not found/offline) or HFValidationError (a ValueError)
        if os.path.isdir(name_or_path):
            raise
        local = "exists" if os.path.exists(name_or_path) else "does not exist"
        raise PretrainedNotFound(
            f"cannot load the {what} '{name_or_path}': it is not a local directory (path {local}) and the "
            f"Hugging Face hub could not provide it ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            f"Download it where you have network (`huggingface-cli download {name_or_path} --local-dir DIR`, or "
            f"`save_pretrained(DIR)`), then set name_or_path to DIR in the config."
        ) from e


def _dtype(name: Optional[str]) -> Optional[torch.dtype]:
    return None if name in (None, "auto") else getattr(torch, name)


def load_or_init(auto_cls, name_or_path: str, what: str, random_init: bool, torch_dtype: Optional[str], **kwargs):
    """``from_pretrained``, or with ``random_init`` a randomly initialised model of the same architecture (only
    ``config.json`` is read: benchmarks, parameter counts on the meta device, from-scratch runs)."""
    if not random_init:
        return from_pretrained(auto_cls, name_or_path, what, torch_dtype=_dtype(torch_dtype), **kwargs)
    from transformers import AutoConfig

    attn = kwargs.pop("attn_implementation", None)
    config = from_pretrained(AutoConfig, name_or_path, what + " config", **kwargs)
    build = getattr(auto_cls, "from_config", None) or auto_cls._from_config  # Auto* classes vs concrete ones
    extra = {"attn_implementation": attn} if attn else {}
    # config.json may say bfloat16 (Qwen, Phi); a random model is built in float32 unless asked otherwise
    return build(config, torch_dtype=_dtype(torch_dtype) or torch.float32, **extra)


class W2VBertEncoder(nn.Module):
    """HF ``Wav2Vec2BertModel`` (w2v-BERT 2.0) on 160-dim SeamlessM4T fbank at 50 Hz → (B, T, H_enc).

    ``config_overrides`` change the pretrained config (e.g. ``mask_time_prob: 0.0``, ``layerdrop: 0.0``); HF's
    defaults keep SpecAugment, layerdrop and dropout on in training mode. SpeechLM puts a frozen encoder in eval.
    ``attention: efficient`` (default) computes the relative-position self-attention without HF's (T, T, head_dim)
    table (``model/w2v_bert_attention.py``: same outputs and parameters, far less memory on long inputs);
    ``attention: hf`` keeps HF's own module.
    """

    def __init__(
        self,
        name_or_path: str = "facebook/w2v-bert-2.0",
        config_overrides: Optional[Dict[str, Any]] = None,
        gradient_checkpointing: bool = False,
        torch_dtype: Optional[str] = None,
        random_init: bool = False,
        attention: str = "efficient",
    ):
        super().__init__()
        from transformers import Wav2Vec2BertModel

        from espnet_speechlm_plugin.model.w2v_bert_attention import ATTENTION_CHOICES, use_efficient_attention

        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"encoder_conf.attention must be one of {ATTENTION_CHOICES}, not {attention!r}")
        self.model = load_or_init(Wav2Vec2BertModel, name_or_path, "speech encoder", random_init, torch_dtype,
                                  **(config_overrides or {}))
        if attention == "efficient":
            use_efficient_attention(self.model)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()

    def input_size(self) -> int:
        return self.model.config.feature_projection_input_dim

    def output_size(self) -> int:
        cfg = self.model.config
        return cfg.output_hidden_size if cfg.add_adapter else cfg.hidden_size

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths[:, None]  # (B, T)
        hidden = self.model(input_features=feats, attention_mask=mask.long()).last_hidden_state  # (B, T', H_enc)
        return hidden, self.model._get_feat_extract_output_lengths(lengths)


class HFAutoEncoder(W2VBertEncoder):
    """Any HF speech encoder that takes ``input_features`` + ``attention_mask`` (``AutoModel``), frame rate kept."""

    def __init__(self, name_or_path: str, config_overrides: Optional[Dict[str, Any]] = None,
                 gradient_checkpointing: bool = False, torch_dtype: Optional[str] = None, random_init: bool = False):
        nn.Module.__init__(self)
        from transformers import AutoModel

        self.model = load_or_init(AutoModel, name_or_path, "speech encoder", random_init, torch_dtype,
                                  **(config_overrides or {}))
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()

    def input_size(self) -> int:
        cfg = self.model.config
        return getattr(cfg, "feature_projection_input_dim", None) or cfg.num_mel_bins

    def output_size(self) -> int:
        return self.model.config.hidden_size

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mask = torch.arange(feats.size(1), device=feats.device)[None, :] < lengths[:, None]
        hidden = self.model(input_features=feats, attention_mask=mask.long()).last_hidden_state
        if hasattr(self.model, "_get_feat_extract_output_lengths"):
            lengths = self.model._get_feat_extract_output_lengths(lengths)
        return hidden, lengths


class LoRALinear(nn.Linear):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``y = x W^T + b + scaling * dropout(x) A^T B^T``.

    ``scaling = alpha / r``; B starts at zero, so a freshly wrapped model computes exactly what the base did. It IS
    an ``nn.Linear`` holding the base ``weight``/``bias`` under their own names, so its state dict is the base's
    plus ``lora_A``/``lora_B`` ("unmerged"): a checkpoint of the plain model (e.g. stage 1) loads into it with only
    the LoRA factors missing, and ``merge_lora`` folds the update into ``weight`` and drops the factors, giving
    the plain architecture's state dict ("merged").
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        self.weight, self.bias = base.weight, base.bias  # the base's own tensors: nothing copied
        for p in (self.weight, self.bias):
            if p is not None:
                p.requires_grad_(False)
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **kw))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **kw))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init, as in the LoRA paper's code
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update folded in (``W + scaling * B A``)."""
        out = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        with torch.no_grad():
            out.weight = nn.Parameter(self.weight + self.scaling * (self.lora_B @ self.lora_A),
                                      requires_grad=self.weight.requires_grad)
        out.bias = self.bias
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_r={self.r}, lora_alpha={self.alpha:g}"


def add_lora(model: nn.Module, r: int = 16, alpha: float = 32.0, dropout: float = 0.05,
             target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
             train_embeddings: bool = True) -> Dict[str, int]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose own name is in ``target_modules`` in a ``LoRALinear``.

    ``train_embeddings`` keeps the input embeddings and the LM head trainable: the language/task tokens we add to
    the vocabulary start random and must learn. Returns {target name: modules wrapped}.
    """
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"decoder_conf.lora.r must be a positive integer, not {r!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    counts = {t: 0 for t in target_modules}
    linear_names = set()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                linear_names.add(child_name)
                if child_name in counts:
                    setattr(module, child_name, LoRALinear(child, r, float(alpha), float(dropout)))
                    counts[child_name] += 1
    unused = [t for t, n in counts.items() if n == 0]
    if unused:
        raise ValueError(f"decoder_conf.lora.target_modules {unused} match no nn.Linear of the LM; its linear "
                         f"layers are named {sorted(linear_names)}")
    if train_embeddings:
        for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
            if emb is not None:
                for p in emb.parameters():
                    p.requires_grad_(True)
    return counts


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every ``LoRALinear`` of ``model`` into a plain ``nn.Linear`` (in place; returns ``model``): same outputs,
    and a state dict with the keys of the model without LoRA (load it with a config that has no ``lora``)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


class HFCausalLM(nn.Module):
    """Any HF causal LM (Qwen2.5, Phi-4-mini, …) via ``AutoModelForCausalLM``, embeddings grown to the tokenizer.

    The embedding matrix is only ever grown (Qwen's has spare rows beyond its tokenizer, which are kept).
    ``lora: {r, alpha, dropout, target_modules, train_embeddings}`` freezes the LM's own weights and trains
    low-rank updates of the named linear layers (``LoRALinear``; e.g. Qwen2: q_proj k_proj v_proj o_proj gate_proj
    up_proj down_proj, Phi-3/4: qkv_proj o_proj gate_up_proj down_proj). Checkpoints then hold the frozen weights
    and the LoRA factors side by side (unmerged) and load with the same config; ``merge_lora(model)`` folds them.
    """

    def __init__(
        self,
        vocab_size: int,
        name_or_path: str = "Qwen/Qwen2.5-0.5B",
        attn_implementation: str = "sdpa",
        torch_dtype: Optional[str] = None,
        gradient_checkpointing: bool = False,
        random_init: bool = False,
        lora: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.lm = load_or_init(AutoModelForCausalLM, name_or_path, "decoder LM", random_init, torch_dtype,
                               attn_implementation=attn_implementation)
        if vocab_size > self.lm.get_input_embeddings().num_embeddings:
            self.lm.resize_token_embeddings(vocab_size)
        if lora:
            try:
                add_lora(self.lm, **lora)
            except TypeError as e:
                raise TypeError(f"decoder_conf.lora: {e} (keys: r, alpha, dropout, target_modules, "
                                "train_embeddings)") from None
        if gradient_checkpointing:
            self.lm.gradient_checkpointing_enable()
        self.lm.config.use_cache = False  # training default; generate.py passes use_cache explicitly

    def hidden_size(self) -> int:
        return self.lm.get_input_embeddings().embedding_dim

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def body(self, **kwargs):
        """The transformer without the LM head: returns last hidden states (and the KV cache when asked)."""
        return self.lm.base_model(**kwargs)

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm.get_output_embeddings()(hidden)
