"""InfoNCE (contrastive cross-entropy) over in-batch and hard negatives, per head.

Also known as NT-Xent, the multiple-negatives ranking loss (sentence-transformers
``MultipleNegativesRankingLoss`` with ``scale = 1 / temperature``) and the
contrastive loss of DPR / E5 / BGE. Papers: van den Oord et al. 2018
(CPC, "InfoNCE"); Karpukhin et al. 2020 (DPR, in-batch negatives); Chen et al.
2024 (BGE M3-Embedding, per-head InfoNCE, tau = 0.02); Yu et al. 2024
(Arctic-Embed 2.0, tau = 0.02).

Layout used by every contrastive loss in embforge: ``q`` holds Q queries and
``d`` holds Q * G documents grouped per query, ``G = 1 + N``: the documents of
query ``i`` are rows ``i*G .. i*G+G-1``, its positive first, then its N hard
negatives.

    L = -1/Q sum_i log( exp(s(q_i, p_i+)/tau) / sum_{p in C_i} exp(s(q_i, p)/tau) )

with ``C_i`` = all Q*G documents of the batch (``in_batch_negatives=True``) or
only query i's own group (``False``, NV-Embed stage 2).
Siblings: ``self_distill`` (M3), ``matryoshka``, ``simcse``, ``distill`` (KL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from embforge.losses.matryoshka import dense_of, matryoshka_dense
from embforge.model.heads import head_scores
from embforge.types import EmbeddingOutput, LossOutput

__all__ = ["candidate_logits", "info_nce", "InfoNCELoss", "WithMatryoshka"]


def candidate_logits(
    scores: torch.Tensor, group_size: int, in_batch_negatives: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick each query's candidates from a full score matrix.

    Args:
        scores: (Q, Q*G) every query against every document of the batch.
        group_size: G = 1 + hard negatives per query.
        in_batch_negatives: keep all columns (True) or only the query's own group.

    Returns:
        (logits, labels): (Q, Q*G) and labels ``i*G``, or (Q, G) and labels 0.

    Example:
        >>> s = torch.arange(8.).view(2, 4)
        >>> candidate_logits(s, 2)[1].tolist(), candidate_logits(s, 2, False)[0].tolist()
        ([0, 2], [[0.0, 1.0], [6.0, 7.0]])
    """
    q = scores.shape[0]
    if scores.shape[1] != q * group_size:
        raise ValueError(
            f"scores have {scores.shape[1]} document columns, expected Q*G = "
            f"{q}*{group_size}: every query needs exactly {group_size - 1} hard negatives"
        )
    rows = torch.arange(q, device=scores.device)
    if in_batch_negatives:
        return scores, rows * group_size
    own = scores.view(q, q, group_size)[rows, rows]  # (Q, G)
    return own, torch.zeros(q, dtype=torch.long, device=scores.device)


def info_nce(
    scores: torch.Tensor, group_size: int, temperature: float = 0.02, in_batch_negatives: bool = True
) -> torch.Tensor:
    """InfoNCE of a (Q, Q*G) score matrix (positives at column i*G). Returns a scalar.

    Example (one query, positive score 1, one negative score 0, tau 1):
        >>> round(float(info_nce(torch.tensor([[1.0, 0.0]]), 2, 1.0)), 6)  # log(1 + e^-1)
        0.313262
    """
    logits, labels = candidate_logits(scores, group_size, in_batch_negatives)
    return F.cross_entropy(logits.float() / temperature, labels)


class InfoNCELoss:
    """InfoNCE on each trained head, summed with per-head weights; optional Matryoshka.

    Args:
        heads: heads to train (dense, sparse, multivector).
        temperature: tau (default 0.02 as in M3 and Arctic-Embed).
        in_batch_negatives: False = only the own positive and own hard negatives.
        head_weights: weight per head (default 1 each).
        matryoshka_dims: extra truncation dims for the dense head (Arctic: [256]);
            the full dim always counts with weight 1.
        matryoshka_weights: weight per extra dim (default 1 each).
    """

    def __init__(
        self,
        heads: Sequence[str] = ("dense",),
        temperature: float = 0.02,
        in_batch_negatives: bool = True,
        head_weights: dict[str, float] | None = None,
        matryoshka_dims: Sequence[int] = (),
        matryoshka_weights: Sequence[float] | None = None,
    ) -> None:
        self.heads = tuple(heads)
        self.temperature = temperature
        self.in_batch_negatives = in_batch_negatives
        self.head_weights = dict(head_weights or {})
        self.matryoshka_dims = tuple(matryoshka_dims)
        self.matryoshka_weights = tuple(matryoshka_weights or [1.0] * len(self.matryoshka_dims))
        if len(self.matryoshka_weights) != len(self.matryoshka_dims):
            raise ValueError(
                f"matryoshka_weights has {len(self.matryoshka_weights)} values for "
                f"{len(self.matryoshka_dims)} matryoshka_dims; give one weight per dim"
            )

    def __call__(
        self,
        q: EmbeddingOutput,
        d: EmbeddingOutput,
        *,
        group_size: int,
        teacher_scores: torch.Tensor | None = None,
    ) -> LossOutput:
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for head in self.heads:
            loss = info_nce(head_scores(q, d, head), group_size, self.temperature, self.in_batch_negatives)
            parts[f"infonce/{head}"] = loss
            w = self.head_weights.get(head, 1.0)
            total = w * loss if total is None else total + w * loss
        if total is None:
            raise ValueError("InfoNCELoss has no head to train; give heads=('dense', ...)")
        for dim, w in zip(self.matryoshka_dims, self.matryoshka_weights):
            qd, dd = matryoshka_dense(dense_of(q), dim), matryoshka_dense(dense_of(d), dim)
            loss = info_nce(qd @ dd.T, group_size, self.temperature, self.in_batch_negatives)
            parts[f"infonce/dense@{dim}"] = loss
            total = total + w * loss
        return LossOutput(total, parts)


class WithMatryoshka:
    """Add Matryoshka InfoNCE terms on the dense head to another loss (e.g. M3 self-distillation).

    ``total = base(q, d).total + sum_k w_k * InfoNCE(trunc(q, dims[k]), trunc(d, dims[k]))``;
    the parts gain ``infonce/dense@<dim>``. The base loss already trains the full dimension.
    """

    def __init__(
        self,
        base: Callable[..., LossOutput],
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

    def __call__(
        self, q: EmbeddingOutput, d: EmbeddingOutput, *, group_size: int, teacher_scores: Any = None
    ) -> LossOutput:
        out = self.base(q, d, group_size=group_size, teacher_scores=teacher_scores)
        total, parts = out.total, dict(out.parts)
        for dim, w in zip(self.dims, self.weights):
            loss = info_nce(
                matryoshka_dense(dense_of(q), dim) @ matryoshka_dense(dense_of(d), dim).T,
                group_size,
                self.temperature,
                self.in_batch_negatives,
            )
            parts[f"infonce/dense@{dim}"] = loss
            total = total + w * loss
        return LossOutput(total, parts)
