"""Length/modality adapters and the temporal compressor: the small trainable parts around the speech encoder.

Flow: features (B, T, 160) → compressor (before the encoder, optional) → encoder → length adapter (after the
encoder) → projector (in speechlm.py) → LM. Every module here maps ``(x, lengths) → (y, new_lengths)`` and keeps
padded frames at zero before each convolution (also after a LayerNorm, whose bias would make them non-zero), so an
utterance gives the same output alone or in any padded batch. ``downsampling()`` is each module's factor of
temporal compression (input frames per output frame); SpeechLM multiplies them into the audio-embedding rate.
"""

from typing import Optional, Tuple

import torch
from torch import nn


def _pad_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths → (B, max_len) bool, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _conv_out_lengths(lengths: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
    return torch.div(lengths + 2 * padding - kernel_size, stride, rounding_mode="floor") + 1


class ConvCompressor(nn.Module):
    """Temporal compression before the encoder (the paper's preset): ``num_layers`` × Conv1d(k=3, s=2) on the fbank features, before the encoder.

    Keeps the feature dimension (the encoder's feature projection expects 160), so 3 layers shorten 50 Hz to
    6.25 Hz before the encoder sees anything.
    """

    def __init__(self, input_size: int = 160, num_layers: int = 3, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        if not 1 <= num_layers <= 3:
            raise ValueError(f"compressor_conf.num_layers must be 1..3 (use --compressor none for 0), got {num_layers}")
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size, input_size, kernel_size, stride=stride, padding=self.padding)
            for _ in range(num_layers)
        )
        self.activation = nn.GELU()

    def downsampling(self) -> int:
        return self.stride ** len(self.convs)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        for i, conv in enumerate(self.convs):
            x = x.masked_fill(~_pad_mask(lengths, x.size(1))[..., None], 0.0)
            x = conv(x.transpose(1, 2)).transpose(1, 2)  # (B, ⌈T/2⌉, D)
            lengths = _conv_out_lengths(lengths, self.kernel_size, self.stride, self.padding)
            if i < len(self.convs) - 1:
                x = self.activation(x)
        return x, lengths


class ConformerBlock(nn.Module):
    """Macaron Conformer block (FFN/2 → MHSA → conv module → FFN/2 → LN) with LayerNorm in the conv module
    (BatchNorm would make an utterance's output depend on its batch)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float):
        super().__init__()

        def ffn() -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
            )

        self.ffn1, self.ffn2 = ffn(), ffn()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.depthwise_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Conv1d(dim, dim, 1)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.dropout(self.ffn1(x))
        h = self.attn_norm(x)
        h, _ = self.attn(h, h, h, key_padding_mask=~mask, need_weights=False)
        x = x + self.dropout(h)
        h = self.conv_norm(x).masked_fill(~mask[..., None], 0.0)
        h = nn.functional.glu(self.pointwise_in(h.transpose(1, 2)), dim=1)  # (B, D, T)
        h = self.depthwise(h.masked_fill(~mask[:, None, :], 0.0))
        h = nn.functional.silu(self.depthwise_norm(h.transpose(1, 2)))  # (B, T, D)
        h = self.pointwise_out(h.transpose(1, 2)).transpose(1, 2)
        x = x + self.dropout(h)
        x = x + 0.5 * self.dropout(self.ffn2(x))
        return self.final_norm(x)


class ConformerAdapter(nn.Module):
    """Our length/modality adapter: ``num_layers`` × (Conv1d stride-2 subsampling → Conformer block)."""

    def __init__(
        self,
        input_size: int,
        num_layers: int = 2,
        stride: int = 2,
        num_heads: int = 8,
        ffn_dim: Optional[int] = None,
        kernel_size: int = 15,
        dropout: float = 0.1,
    ):
        super().__init__()
        if input_size % num_heads:
            raise ValueError(f"length_adapter_conf.num_heads={num_heads} must divide the encoder size {input_size}")
        self.stride = stride
        self.subsample = nn.ModuleList(
            nn.Conv1d(input_size, input_size, 2 * stride - 1, stride=stride, padding=stride - 1)
            for _ in range(num_layers)
        )
        self.blocks = nn.ModuleList(
            ConformerBlock(input_size, num_heads, ffn_dim or 4 * input_size, kernel_size, dropout)
            for _ in range(num_layers)
        )

    def downsampling(self) -> int:
        return self.stride ** len(self.blocks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        for subsample, block in zip(self.subsample, self.blocks):
            x = x.masked_fill(~_pad_mask(lengths, x.size(1))[..., None], 0.0)
            x = subsample(x.transpose(1, 2)).transpose(1, 2)  # (B, ⌈T/stride⌉, D)
            lengths = _conv_out_lengths(lengths, subsample.kernel_size[0], self.stride, subsample.padding[0])
            x = block(x, _pad_mask(lengths, x.size(1)))
        return x, lengths


class W2VBertAdapter(nn.Module):
    """w2v-BERT 2.0's own adapter (HF ``Wav2Vec2BertAdapter``, what ``add_adapter=True`` builds), as a separate
    module so it can be trained in stage 1 while the encoder stays frozen.

    The parameters are HF's own module (``adapter.layers.N.…``: HF adapter state dicts load as they are), but the
    layers run here, with padded frames zeroed after each LayerNorm and before each strided conv: in HF's forward
    the last real frame of an odd-length item reads the LayerNorm of a padded frame (its bias once trained), so an
    item's output depends on its batch. On unpadded input this computes exactly what HF's forward does. Layerdrop
    is off: in HF it skips a layer but still shortens the length bookkeeping, so the audio mask would desync.
    """

    def __init__(
        self,
        input_size: int,
        num_layers: int = 2,
        stride: int = 2,
        kernel_size: int = 3,
        num_heads: int = 16,
        ffn_dim: Optional[int] = None,
        dropout: float = 0.1,
        activation: str = "relu",
    ):
        super().__init__()
        from transformers import Wav2Vec2BertConfig
        from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertAdapter as HFAdapter

        if kernel_size // 2 != stride // 2:
            # HF pads its convs by stride // 2 but computes output lengths with kernel_size // 2
            raise ValueError(f"length_adapter_conf: w2v_bert_adapter needs kernel_size // 2 == stride // 2 (HF pads "
                             f"by the stride, counts lengths by the kernel), got kernel_size {kernel_size}, stride "
                             f"{stride}")
        config = Wav2Vec2BertConfig(
            hidden_size=input_size,
            output_hidden_size=input_size,
            num_attention_heads=num_heads,
            intermediate_size=ffn_dim or 4 * input_size,
            num_adapter_layers=num_layers,
            adapter_stride=stride,
            adapter_kernel_size=kernel_size,
            adapter_act=activation,
            conformer_conv_dropout=dropout,
            attention_dropout=dropout,
            activation_dropout=dropout,
            layerdrop=0.0,
        )
        self.adapter = HFAdapter(config)
        self.num_layers, self.stride, self.kernel_size = num_layers, stride, kernel_size

    def downsampling(self) -> int:
        return self.stride ** self.num_layers

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        for layer in self.adapter.layers:  # HF's Wav2Vec2BertAdapterLayer.forward, padding zeroed before each conv
            pad = ~_pad_mask(lengths, x.size(1))[..., None]  # (B, T, 1)
            residual = layer.residual_layer_norm(x).masked_fill(pad, 0.0)
            residual = layer.activation(layer.residual_conv(residual.transpose(1, 2))).transpose(1, 2)  # (B, T/s, D)
            h = layer.self_attn_layer_norm(x).masked_fill(pad, 0.0)
            h = layer.activation(layer.self_attn_conv(h.transpose(1, 2))).transpose(1, 2)  # (B, T/s, D)
            lengths = _conv_out_lengths(lengths, self.kernel_size, self.stride, self.kernel_size // 2)
            keys = _pad_mask(lengths, h.size(1))  # (B, T/s)
            bias = torch.zeros(keys.shape, dtype=h.dtype, device=h.device).masked_fill(~keys, torch.finfo(h.dtype).min)
            h, _ = layer.self_attn(h, attention_mask=bias[:, None, None, :])  # additive mask (B, 1, 1, T/s)
            x = layer.self_attn_dropout(h) + residual
            x = layer.ffn(layer.ffn_layer_norm(x)) + x  # (B, T/s, D)
        return x, lengths


class LinearAdapter(nn.Module):
    """The simplest adapter: stack ``stride`` consecutive frames and mix them with one Linear."""

    def __init__(self, input_size: int, stride: int = 4):
        super().__init__()
        self.stride = stride
        self.linear = nn.Linear(stride * input_size, input_size)

    def downsampling(self) -> int:
        return self.stride

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        x = x.masked_fill(~_pad_mask(lengths, t)[..., None], 0.0)
        x = nn.functional.pad(x, (0, 0, 0, (-t) % self.stride))  # (B, ⌈T/s⌉·s, D)
        x = self.linear(x.reshape(b, -1, self.stride * d))  # (B, ⌈T/s⌉, D)
        return x, torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
