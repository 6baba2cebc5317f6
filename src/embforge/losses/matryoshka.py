"""Matryoshka Representation Learning on the dense head.

Kusupati et al. 2022 (MRL): the loss is applied to the full embedding and to its
first ``dim`` coordinates (re-normalised), so truncated vectors stay useful.
Arctic-Embed 2.0 trains full dim + 256. Unlike sentence-transformers'
``MatryoshkaLoss`` this never patches the model: it truncates embeddings.
Siblings: ``infonce`` (which calls this for its ``matryoshka_dims``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["matryoshka_dense", "matryoshka_loss", "WithMatryoshka"]


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
    return F.normalize(x[..., :dim], dim=-1)


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
    return total, terms  # type: ignore[return-value]


class WithMatryoshka:
    """Add Matryoshka InfoNCE terms on the dense head to another loss (e.g. M3 self-distillation).

    ``total = base(q, d).total + sum_k w_k * InfoNCE(trunc(q, dims[k]), trunc(d, dims[k]))``;
    the parts gain ``infonce/dense@<dim>``. The base loss already trains the full dimension.
    """

    def __init__(
        self,
        base,
        dims: Sequence[int],
        weights: Sequence[float] | None = None,
        temperature: float = 0.02,
        in_batch_negatives: bool = True,
    ) -> None:
        self.base = base
        self.dims = tuple(int(x) for x in dims)
        self.weights = tuple(weights or [1.0] * len(self.dims))
        if len(self.weights) != len(self.dims):
            raise ValueError(
                f"{len(self.weights)} matryoshka weights for {len(self.dims)} dims; give one per dim"
            )
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives

    def __call__(self, q, d, *, group_size: int, teacher_scores=None):
        from embforge.losses.infonce import info_nce
        from embforge.types import LossOutput

        out = self.base(q, d, group_size=group_size, teacher_scores=teacher_scores)
        total, parts = out.total, dict(out.parts)
        for dim, w in zip(self.dims, self.weights):
            loss = info_nce(
                matryoshka_dense(q.dense, dim) @ matryoshka_dense(d.dense, dim).T,
                group_size,
                self.temperature,
                self.in_batch_negatives,
            )
            parts[f"infonce/dense@{dim}"] = loss
            total = total + w * loss
        return LossOutput(total, parts)
