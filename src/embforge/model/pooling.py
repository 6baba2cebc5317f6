"""Pooling: (B, T, H) hidden states + (B, T) mask -> (B, H) one vector per text.

Poolings are small ``nn.Module``s in the ``POOLINGS`` registry, built by
``POOLINGS.get(name)(hidden_size, **options)``. Add one (e.g. latent attention,
last token for decoders) with ``@POOLINGS.register("name")`` on a class whose
``__init__(hidden_size, **options)`` and ``forward(hidden, mask)`` follow the shapes
above; the encoder and checkpoints pick it up by name.
"""

from __future__ import annotations

import torch
from torch import nn

from embforge.registry import Registry

__all__ = ["POOLINGS", "ClsPooling", "MeanPooling", "build_pooling"]

POOLINGS: Registry = Registry("pooling")


@POOLINGS.register("cls")
class ClsPooling(nn.Module):
    """The first token's hidden state ``H[0]`` (BGE-M3, RetroMAE)."""

    def __init__(self, hidden_size: int = 0, **_: object) -> None:
        super().__init__()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]  # (B, H)


@POOLINGS.register("mean")
class MeanPooling(nn.Module):
    """Average of the hidden states of the masked-in tokens (sentence-transformers' mean)."""

    def __init__(self, hidden_size: int = 0, **_: object) -> None:
        super().__init__()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        s = (hidden * m).sum(dim=1)  # (B, H)
        return s / m.sum(dim=1).clamp(min=1e-9)


def build_pooling(name: str, hidden_size: int, **options: object) -> nn.Module:
    """Build the pooling module registered as ``name`` (raises "unknown pooling ... choose from")."""
    return POOLINGS.get(name)(hidden_size, **options)


# decoder poolings ("latent_attention", "last_token") register themselves on import
from embforge.model import latent_attention as _latent_attention  # noqa: E402,F401
