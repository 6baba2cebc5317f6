"""RetroMAE's one-layer decoder with two-stream attention (enhanced decoding).

The query stream ``H1 = [h + p_1, ..., h + p_N]`` supplies the queries; the
content stream ``H2 = [h, e_1 + p_1, ..., e_N + p_N]`` supplies keys and values:
``softmax(Q K^T / sqrt(d) + M) V`` with ``Q = H1 W_q``, ``K = H2 W_k``,
``V = H2 W_v`` and ``M`` from :func:`embforge.pretrain.masking.enhanced_decoding_mask`.
Then the usual transformer sub-layers (output projection + residual on the
query stream + LayerNorm, feed-forward + residual + LayerNorm), as in a BERT
layer.

Shape letters: B batch, T tokens, H hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DecoderConfig", "EnhancedDecoderLayer"]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "gelu_new": lambda: nn.GELU("tanh"), "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of the decoder layer (read from the encoder's HF config by :meth:`from_hf`)."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02

    @classmethod
    def from_hf(cls, config) -> DecoderConfig:
        """Take the sizes from a transformers ``PretrainedConfig`` (BERT/XLM-R/ModernBERT names)."""

        def first(*names, default=None):
            for n in names:
                v = getattr(config, n, None)
                if v is not None:
                    return v
            return default

        act = first("hidden_act", "hidden_activation", default="gelu")
        return cls(
            hidden_size=int(config.hidden_size),
            num_attention_heads=int(config.num_attention_heads),
            intermediate_size=int(first("intermediate_size", default=4 * config.hidden_size)),
            hidden_act=act if isinstance(act, str) and act in _ACTIVATIONS else "gelu",
            layer_norm_eps=float(first("layer_norm_eps", "norm_eps", default=1e-12)),
            dropout=float(first("hidden_dropout_prob", "embedding_dropout", default=0.1)),
            attention_dropout=float(first("attention_probs_dropout_prob", "attention_dropout", default=0.1)),
            initializer_range=float(first("initializer_range", default=0.02)),
        )


class EnhancedDecoderLayer(nn.Module):
    """One transformer layer whose queries and keys/values come from different streams.

    Args:
        config: layer sizes.

    Example:
        >>> layer = EnhancedDecoderLayer(DecoderConfig(8, 2, 16))
        >>> q, c = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
        >>> layer(q, c, torch.ones(1, 3, 3, dtype=torch.bool)).shape
        torch.Size([1, 3, 8])
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        H = config.hidden_size
        if H % config.num_attention_heads:
            raise ValueError(
                f"hidden_size {H} is not a multiple of num_attention_heads {config.num_attention_heads}"
            )
        self.config = config
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(H, H)
        self.key = nn.Linear(H, H)
        self.value = nn.Linear(H, H)
        self.attn_out = nn.Linear(H, H)
        self.attn_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(H, config.intermediate_size)
        self.act = _ACTIVATIONS[config.hidden_act]()
        self.ffn_out = nn.Linear(config.intermediate_size, H)
        self.ffn_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=self.config.initializer_range)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, H/heads)
        B, T, H = x.shape
        return x.view(B, T, self.num_heads, H // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, content: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Args:
            query: (B, T, H) query stream ``h + p_i``.
            content: (B, T, H) content stream ``[h, e_1+p_1, ...]``.
            visible: (B, T, T) bool, ``True`` where query i may attend to content j.

        Returns:
            (B, T, H) hidden states for the reconstruction head.
        """
        B, T, H = query.shape
        q, k, v = (
            self._split(self.query(query)),
            self._split(self.key(content)),
            self._split(self.value(content)),
        )
        p = self.config.attention_dropout if self.training else 0.0
        # boolean mask: True = may attend (every row keeps position 0, so no row is empty)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None], dropout_p=p)
        ctx = ctx.transpose(1, 2).reshape(B, T, H)
        x = self.attn_norm(self.dropout(self.attn_out(ctx)) + query)
        return self.ffn_norm(self.dropout(self.ffn_out(self.act(self.ffn_in(x)))) + x)
