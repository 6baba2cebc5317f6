"""Matryoshka Representation Learning on the dense head.

Kusupati et al. 2022 (MRL): the loss is applied to the full embedding and to its
first ``dim`` coordinates (re-normalised), so truncated vectors stay useful.
Arctic-Embed 2.0 trains full dim + 256. Unlike sentence-transformers'
``MatryoshkaLoss`` this never patches the model: it truncates embeddings.
Siblings: ``infonce`` (which calls this for its ``matryoshka_dims``, and whose
``WithMatryoshka`` adds these terms to another loss, e.g. M3 self-distillation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from embforge.scoring import truncate_dense
from embforge.types import EmbeddingOutput

__all__ = ["dense_of", "matryoshka_dense", "matryoshka_loss"]


def dense_of(out: EmbeddingOutput) -> torch.Tensor:
    """The dense head's (B, D) output, or a ValueError naming the fix when it was not computed."""
    if out.dense is None:
        raise ValueError("this loss trains the dense head; add 'dense' to the model's heads")
    return out.dense


def matryoshka_dense(x: torch.Tensor, dim: int) -> torch.Tensor:
    """(B, D) -> (B, dim): the first ``dim`` coordinates, L2-normalised again.

    Example:
        >>> matryoshka_dense(torch.tensor([[3.0, 4.0, 12.0]]), 2).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    if dim > x.shape[-1]:
        raise ValueError(
            f"matryoshka dim {dim} exceeds the embedding dim {x.shape[-1]}; use dims <= {x.shape[-1]}"
        )
    if dim == x.shape[-1]:  # the full vector: renormalised like the truncated ones
        return F.normalize(x, dim=-1)
    return truncate_dense(x, dim)


def matryoshka_loss(
    q: torch.Tensor,
    d: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """``sum_k weights[k] * loss_fn(trunc(q, dims[k]), trunc(d, dims[k]))`` and each term.

    Args:
        q: (Q, D) query vectors; d: (N, D) document vectors.
        dims: truncation dims (use D for the full vector).
        weights: one weight per dim.
        loss_fn: maps (query vectors, document vectors) to a scalar loss.
    """
    if len(dims) != len(weights):
        raise ValueError(f"{len(weights)} matryoshka weights for {len(dims)} dims; give one per dim")
    terms = {int(k): loss_fn(matryoshka_dense(q, k), matryoshka_dense(d, k)) for k in dims}
    total = sum(w * terms[int(k)] for k, w in zip(dims, weights))
    return total, terms  # type: ignore[return-value]  # sum() of tensors types as int | Tensor
