"""w2v-BERT self-attention without the (T, T, head_dim) position table: same outputs, a fraction of the memory.

HF's ``Wav2Vec2BertSelfAttention`` with ``position_embeddings_type: relative_key`` (w2v-BERT 2.0's setting) adds
``q_i · E[clamp(j - i, -left, right) + left] / sqrt(d)`` to every score. It gets there by looking up a
(T, T, head_dim) tensor of embeddings and an einsum over it in every layer, then adds the padding mask to the
full (B, H, T, T) scores outside any fused kernel. At 50 Hz a 90 s input is T = 4,500: the table alone is 5.2 GB
per layer, and training keeps it for the backward pass.

The distances are clamped (to [-64, 8] in w2v-BERT 2.0), so only ``left + right + 1`` embeddings exist:
``q · Eᵀ`` is a (B, H, T, 73) tensor, and a gather along its last axis gives every score's position term. That
term plus the padding mask is the additive bias of ``torch.nn.functional.scaled_dot_product_attention``. Query
rows are independent, so the attention runs over blocks of rows: no (B, H, T, T) tensor is ever whole, and the
backward pass recomputes each block's probabilities from q, k and ``q · Eᵀ`` (``_RelativeKeyAttention``; with
attention dropout, activation checkpointing of each block instead), so nothing of size T² is kept between
forward and backward.

``use_efficient_attention(model)`` swaps the module in a built ``Wav2Vec2BertModel`` (``W2VBertEncoder`` does it
unless ``encoder_conf.attention: hf``). The new module holds the HF module's own sub-modules, so parameters,
state-dict keys and checkpoints are unchanged. It computes what HF's module computes, except that asking for the
attention probabilities (``output_attentions=True``) runs HF's own code, and attention dropout draws other random
numbers than HF's (same probability, same train/eval behaviour).
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint
from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertSelfAttention

ATTENTION_CHOICES = ("efficient", "hf")


def relative_key_index(row_start: int, row_end: int, key_length: int, left: int, right: int,
                       device: torch.device) -> torch.Tensor:
    """(rows, key_length) index into the ``left + right + 1`` distance embeddings, as HF computes it."""
    rows = torch.arange(row_start, row_end, device=device)[:, None]
    distance = torch.arange(key_length, device=device)[None, :] - rows
    return distance.clamp(-left, right) + left


def _block_bias(position_scores, attention_mask, row_start: int, key_length: int, left: int, right: int):
    """(B, H, rows, T_k) additive bias of a block of query rows: the gathered position term plus HF's mask."""
    batch, heads, rows, _ = position_scores.shape
    index = relative_key_index(row_start, row_start + rows, key_length, left, right, position_scores.device)
    bias = position_scores.gather(-1, index.expand(batch, heads, rows, key_length))
    if attention_mask is not None:
        bias += _mask_rows(attention_mask, row_start, row_start + rows)  # 0, or finfo(dtype).min on padded keys
    return bias


def _mask_rows(attention_mask, start: int, end: int):
    # HF expands its (B, 1, 1, T) mask to (B, 1, T, T): every row is the same, slice only a real row axis
    return attention_mask if attention_mask.size(-2) == 1 else attention_mask[..., start:end, :]


class _RelativeKeyAttention(torch.autograd.Function):
    """softmax(q kᵀ / sqrt(d) + bias) v over blocks of query rows, bias = gathered position scores + mask.

    Forward runs SDPA on each block; backward recomputes each block's probabilities from q, k and the
    (B, H, T, P) position scores, so the saved state is O(T) per head. The mask gets no gradient (HF builds it
    from the integer padding mask). No dropout: with dropout the attention takes the checkpointed SDPA path.
    """

    @staticmethod
    def forward(ctx, query, key, value, position_scores, attention_mask, left: int, right: int, rows: int):
        length, key_length = query.size(2), key.size(2)
        out = torch.empty_like(query)  # (B, H, T, d)
        for start in range(0, length, rows):
            end = min(start + rows, length)
            bias = _block_bias(position_scores[:, :, start:end], attention_mask, start, key_length, left, right)
            out[:, :, start:end] = F.scaled_dot_product_attention(query[:, :, start:end], key, value, attn_mask=bias)
        ctx.save_for_backward(query, key, value, position_scores, out, attention_mask)
        ctx.left, ctx.right, ctx.rows = left, right, rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        query, key, value, position_scores, out, attention_mask = ctx.saved_tensors
        length, key_length = query.size(2), key.size(2)
        scale = 1.0 / math.sqrt(query.size(-1))
        grad_out = grad_out.contiguous()
        grad_query, grad_position = torch.empty_like(query), torch.empty_like(position_scores)
        grad_key, grad_value = torch.zeros_like(key), torch.zeros_like(value)
        # softmax backward: dS = P ∘ (dP - rowsum(dO ∘ O)), and rowsum(P ∘ dP) = rowsum(dO ∘ O)
        delta = (grad_out * out).sum(-1, keepdim=True)  # (B, H, T, 1)
        for start in range(0, length, ctx.rows):
            end = min(start + ctx.rows, length)
            q, g = query[:, :, start:end], grad_out[:, :, start:end]
            scores = _block_bias(position_scores[:, :, start:end], attention_mask, start, key_length, ctx.left,
                                 ctx.right)
            scores += torch.matmul(q, key.transpose(-2, -1)).mul_(scale)  # (B, H, rows, T_k)
            probs = torch.softmax(scores, dim=-1)
            del scores
            grad_value += torch.matmul(probs.transpose(-2, -1), g)
            grad_scores = torch.matmul(g, value.transpose(-2, -1)).sub_(delta[:, :, start:end]).mul_(probs)
            del probs
            grad_query[:, :, start:end] = torch.matmul(grad_scores, key).mul_(scale)
            grad_key += torch.matmul(grad_scores.transpose(-2, -1), q).mul_(scale)
            index = relative_key_index(start, end, key_length, ctx.left, ctx.right, query.device)
            grad_position[:, :, start:end] = torch.zeros_like(grad_position[:, :, start:end]).scatter_add_(
                -1, index.expand_as(grad_scores), grad_scores)
        return grad_query, grad_key, grad_value, grad_position, None, None, None, None


def _attend_block_with_dropout(query, key, value, position_scores, attention_mask, row_start: int, left: int,
                               right: int, dropout_p: float):
    bias = _block_bias(position_scores, attention_mask, row_start, key.size(2), left, right)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout_p)


class RelativeKeySelfAttention(Wav2Vec2BertSelfAttention):
    """``Wav2Vec2BertSelfAttention`` (relative_key) computed from ``q · Eᵀ``, a gather and SDPA, in row blocks.

    ``block_elements`` bounds one block's (B, H, rows, T) bias/score tensors (2**23 elements = 32 MiB in fp32);
    a sequence that fits in one block is one SDPA call.
    """

    block_elements = 2**23

    @classmethod
    def from_hf(cls, module: Wav2Vec2BertSelfAttention, config) -> "RelativeKeySelfAttention":
        """A ``RelativeKeySelfAttention`` that owns ``module``'s sub-modules (its parameters, not copies)."""
        with torch.device("meta"):  # the new module's own parameters are replaced below: allocate nothing
            new = cls(config)
        for name, child in module.named_children():
            setattr(new, name, child)
        for name, param in module.named_parameters(recurse=False):
            setattr(new, name, param)
        new.train(module.training)
        return new

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        relative_position_embeddings: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if output_attentions:  # the probabilities are only ever whole in HF's computation
            return super().forward(hidden_states, attention_mask, relative_position_embeddings, output_attentions)
        batch, length, _ = hidden_states.shape
        heads, head_size = self.num_heads, self.head_size
        query = self.linear_q(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)  # (B, H, T, d)
        key = self.linear_k(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
        value = self.linear_v(hidden_states).view(batch, length, heads, head_size).transpose(1, 2)
        # every distance embedding, through the module's forward (so hooks that gather sharded weights run)
        table = self.distance_embedding
        embeddings = table(torch.arange(table.num_embeddings, device=query.device)).to(query.dtype)  # (P, d)
        position_scores = torch.matmul(query, embeddings.t()) / math.sqrt(head_size)  # (B, H, T, P)

        left, right = self.left_max_position_embeddings, self.right_max_position_embeddings
        dropout_p = self.dropout.p if self.training else 0.0
        rows = max(1, self.block_elements // (batch * heads * length))
        if dropout_p == 0.0:
            hidden = _RelativeKeyAttention.apply(query, key, value, position_scores, attention_mask, left, right,
                                                 rows)  # (B, H, T, d)
        else:  # SDPA's own dropout; with gradients, each block is recomputed by checkpointing (same RNG state)
            recompute = any(t.requires_grad for t in (query, key, value, position_scores))  # False under no_grad
            blocks = []
            for start in range(0, length, rows):
                end = min(start + rows, length)
                args = (query[:, :, start:end], key, value, position_scores[:, :, start:end], attention_mask, start,
                        left, right, dropout_p)
                if recompute:
                    blocks.append(checkpoint(_attend_block_with_dropout, *args, use_reentrant=False))
                else:
                    blocks.append(_attend_block_with_dropout(*args))
            hidden = torch.cat(blocks, dim=2)  # (B, H, T, d)
        hidden = hidden.transpose(1, 2).reshape(batch, length, heads * head_size)  # (B, T, H·d)
        return self.linear_out(hidden), None


def use_efficient_attention(model: nn.Module, config=None) -> int:
    """Swap every relative_key ``Wav2Vec2BertSelfAttention`` of a built HF w2v-BERT model (or of any module holding
    them, e.g. one encoder layer; then pass its ``config``) for ``RelativeKeySelfAttention``, in place; returns how
    many were swapped.

    Modules with other position encodings (rotary, relative, none: e.g. w2v-BERT's own adapter layers) stay HF's.
    """
    config = config if config is not None else model.config
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Wav2Vec2BertSelfAttention and child.position_embeddings_type == "relative_key":
                setattr(parent, name, RelativeKeySelfAttention.from_hf(child, config))
                swapped += 1
    return swapped
