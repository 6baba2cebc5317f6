"""Poolings for decoder embedders: NV-Embed latent attention and last token (EOS).

NV-Embed (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as Generalist
Embedding Models") pools the last hidden states
``O`` (B, T, H) of a bidirectional decoder with *latent attention*: ``O`` are
the queries, a trainable latent array ``L`` (r, H) (r = 512) is keys and values,

    O'  = O + W_o MultiHead(softmax(Q K^T / sqrt(d)) V),   Q = W_q O, K = W_k L, V = W_v L
    O'' = O' + MLP(O')            (MLP: Linear -> GELU -> Linear, 2 layers)
    e   = mean of O'' over the pooled tokens

The residual connections and pre-LayerNorms follow the released NV-Embed code.
The paper's ablation has latent attention beat mean pooling and the last-token
(EOS) embedding; those two are the comparison poolings (``"mean"`` is the
encoder's own mean pooling, ``"last_token"`` is here).

Each token attends to the latents only, never to other tokens, so a token that
is left out of the final mean (an instruction token: ``Batch.pool_mask == 0``)
reaches the embedding only through the decoder's own self-attention.

These classes follow the pooling protocol of ``embforge.model.pooling``
(``__init__(hidden_size, **options)``, ``forward(hidden (B,T,H), mask (B,T)) -> (B,H)``,
mask = the tokens to pool) and are named in its ``POOLINGS`` registry as lazy entries
``"latent_attention"`` and ``"last_token"`` (imported on first use). Outputs are not normalised (the dense
head does that).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embforge.errors import ConfigError

__all__ = ["LatentAttentionPooling", "LastTokenPooling", "masked_mean", "last_token"]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over the positions where ``mask`` (B, T) is nonzero -> (B, H).

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> masked_mean(h, torch.tensor([[1, 1, 0]])).tolist()
        [[2.0]]
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hidden state at each row's last nonzero ``mask`` position -> (B, H).

    With the attention mask (or a pool mask that only drops a leading instruction)
    this is the last real token: the EOS of a decoder. Right and left padding both work.

    Example:
        >>> h = torch.arange(6.0).view(2, 3, 1)
        >>> last_token(h, torch.tensor([[1, 1, 0], [0, 1, 1]])).tolist()
        [[1.0], [5.0]]
    """
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device).expand_as(mask)
    idx = torch.where(mask.bool(), pos, -1).max(dim=1).values.clamp_min(0)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


class LastTokenPooling(nn.Module):
    """The last pooled token's hidden state: EOS pooling of decoder embedders (no parameters).

    The instruction prefix comes first, so the last token is never an instruction token.
    """

    def __init__(self, hidden_size: int = 0, **_: object) -> None:
        super().__init__()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return last_token(hidden, mask)  # (B, H)


class LatentAttentionPooling(nn.Module):
    """NV-Embed latent-attention pooling (trainable).

    Args:
        hidden_size: H of the backbone.
        num_latents: r, the number of latent vectors (keys and values); paper: 512.
        num_heads: attention heads; paper: 8. Must divide ``hidden_size``.
        mlp_ratio: hidden width of the 2-layer GELU MLP as a multiple of H.
        seed: seed of the initial latents and projections (a private generator; the
            global RNG is untouched), so a fresh head on a pretrained backbone is reproducible.

    Shapes: hidden (B, T, H), mask (B, T) -> (B, H).
    """

    def __init__(
        self,
        hidden_size: int,
        num_latents: int = 512,
        num_heads: int = 8,
        mlp_ratio: int = 4,
        seed: int = 0,
        **_: object,
    ) -> None:
        super().__init__()
        if hidden_size <= 0 or hidden_size % num_heads:
            raise ConfigError(
                f"latent attention: hidden_size {hidden_size} is not a positive multiple of "
                f"num_heads {num_heads}; set pooling_options.num_heads to a divisor of the backbone's hidden size"
            )
        if num_latents < 1:
            raise ConfigError(f"latent attention: num_latents must be >= 1, got {num_latents}")
        self.hidden_size, self.num_latents, self.num_heads = hidden_size, num_latents, num_heads
        gen = torch.Generator().manual_seed(seed)
        self.latents = nn.Parameter(torch.randn(num_latents, hidden_size, generator=gen))
        self.norm_q = nn.LayerNorm(hidden_size)
        self.norm_kv = nn.LayerNorm(hidden_size)
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.norm_mlp = nn.LayerNorm(hidden_size)
        mlp_in = nn.Linear(hidden_size, mlp_ratio * hidden_size)
        mlp_out = nn.Linear(mlp_ratio * hidden_size, hidden_size)
        self.mlp = nn.Sequential(mlp_in, nn.GELU(), mlp_out)
        with torch.no_grad():
            for lin in (self.q_proj, self.k_proj, self.v_proj, self.o_proj, mlp_in, mlp_out):
                bound = 1 / math.sqrt(lin.in_features)
                lin.weight.uniform_(-bound, bound, generator=gen)
                if lin.bias is not None:
                    lin.bias.zero_()

    def token_outputs(self, hidden: torch.Tensor) -> torch.Tensor:
        """Per-token outputs O'' (B, T, H) before the mean; each token independent of the others."""
        B, T, H = hidden.shape
        nh, hd = self.num_heads, H // self.num_heads
        lat = self.norm_kv(self.latents.to(hidden.dtype))  # (r, H)
        q = self.q_proj(self.norm_q(hidden)).view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(lat).view(1, -1, nh, hd).transpose(1, 2).expand(B, -1, -1, -1)  # (B, nh, r, hd)
        v = self.v_proj(lat).view(1, -1, nh, hd).transpose(1, 2).expand(B, -1, -1, -1)  # (B, nh, r, hd)
        attn = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hd)
        x = hidden + self.o_proj(attn.transpose(1, 2).reshape(B, T, H))
        return x + self.mlp(self.norm_mlp(x))  # (B, T, H)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(self.token_outputs(hidden), mask)  # (B, H)
