"""The three BGE-M3 heads (SPEC section 1). Each maps hidden states H (B, T, H) to one output.

- dense:       ``norm(pool(H))`` (B, D); Matryoshka: ``truncate_dense`` keeps the first dims and renormalises.
- sparse:      ``ReLU(W_lex^T H)`` (B, T) per-token weights, special and padding tokens 0.
- multivector: ``norm(W_mul^T H[1:])`` (B, T-1, M) ColBERT vectors of the non-[CLS] tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embforge.scoring.matryoshka import truncate_dense

__all__ = ["DenseHead", "SparseHead", "MultiVectorHead", "truncate_dense", "init_linear_"]


def init_linear_(linear: nn.Linear, seed: int) -> nn.Linear:
    """Deterministic init for a head missing from a checkpoint: N(0, 0.02) weights, zero bias,
    drawn from a private generator seeded with ``seed`` (the global RNG is untouched)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.02)
        if linear.bias is not None:
            linear.bias.zero_()
    return linear


class DenseHead(nn.Module):
    """Pooling + optional L2 normalisation: (B, T, H) -> (B, D=H)."""

    def __init__(self, pooling: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        e = self.pooling(hidden, pool_mask)  # (B, D)
        return F.normalize(e, dim=-1) if self.normalize else e


class SparseHead(nn.Module):
    """Lexical weights ``w_t = ReLU(W_lex^T H[t])``: (B, T, H) -> (B, T).

    ``special_ids`` (cls, eos/sep, pad, unk, ...) and padding positions get weight 0.
    Terms repeated in a text keep their max weight when turned into term vectors
    (see ``embforge.scoring.lexical``).
    """

    def __init__(self, hidden_size: int, special_ids: list[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        self.register_buffer(
            "special_ids", torch.tensor(sorted(set(special_ids)), dtype=torch.long), persistent=False
        )

    def forward(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        w = torch.relu(self.linear(hidden)).squeeze(-1)  # (B, T)
        keep = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        return w * keep.to(w.dtype)


class MultiVectorHead(nn.Module):
    """ColBERT vectors ``norm(W_mul^T H[1:])``: (B, T, H) -> (B, T-1, M) and mask (B, T-1)."""

    def __init__(self, hidden_size: int, dim: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, dim or hidden_size)

    def forward(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = attention_mask[:, 1:]  # (B, T-1)
        v = self.linear(hidden[:, 1:]) * mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize(v, dim=-1), mask
