"""Pooling: (B, T, H) hidden states + (B, T) mask -> (B, H) one vector per text.

Poolings are small ``nn.Module``s in the ``POOLINGS`` registry, built by
``build_pooling(name, hidden_size, **options)``. An entry is a class whose
``__init__(hidden_size, **options)`` and ``forward(hidden, mask)`` follow the shapes
above, or a lazy ``"module:attr"`` string naming one in a plugin package (the
NV-Embed poolings: the core never imports ``embforge.nv_embed`` until such a pooling
is built). Registration is explicit, at the bottom of this module.
"""

from __future__ import annotations

import torch
from torch import nn

from embforge.model.plugins import import_attr
from embforge.registry import Registry

__all__ = ["POOLINGS", "ClsPooling", "MeanPooling", "build_pooling"]

POOLINGS: Registry = Registry("pooling")


class ClsPooling(nn.Module):
    """The first token's hidden state ``H[0]`` (BGE-M3, RetroMAE)."""

    def __init__(self, hidden_size: int = 0, **_: object) -> None:
        super().__init__()

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]  # (B, H)


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
    return import_attr(POOLINGS.get(name))(hidden_size, **options)


POOLINGS.add("cls", ClsPooling)
POOLINGS.add("mean", MeanPooling)
# NV-Embed (Lee et al., 2024) decoder poolings, in the plugin package, imported on first use
POOLINGS.add("latent_attention", "embforge.nv_embed.latent_attention:LatentAttentionPooling")
POOLINGS.add("last_token", "embforge.nv_embed.latent_attention:LastTokenPooling")
