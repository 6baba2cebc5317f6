"""M3 self-knowledge distillation (BGE M3-Embedding, Chen et al. 2024, section 3.2).

Each head's scores ``s_dense, s_lex, s_mul`` (Q, candidates) are trained with
InfoNCE, and the integrated score ``s_inter = w1 s_dense + w2 s_lex + w3 s_mul``
acts as a teacher whose soft labels every head learns from:

    L_*     = InfoNCE(s_* / tau)                       (and L_inter on s_inter)
    L'_*    = - softmax(s_inter / tau) . log softmax(s_* / tau)
    L       = (l1 L_dense + l2 L_lex + l3 L_mul + L_inter) / 4
    L'      = (l1 L'_dense + l2 L'_lex + l3 L'_mul) / 3
    L_final = (L + L') / 2

Paper weights w = (1, 0.3, 1), l = (1, 0.1, 1). The unweighted variant (the
earlier formulation) uses ``s_inter = s_dense + s_lex + s_mul``,
``L = L_dense + L_lex + L_mul + L_inter``, ``L' = L'_dense + L'_lex + L'_mul``
and ``L_final = L + L'``. As in FlagEmbedding's reference implementation the
teacher distribution is detached (no gradient flows through the soft labels).
``teacher_shares`` measures whether one head dominates the teacher: head i's share of
``Var(s_inter)`` over each query's candidates is ``Cov(w_i s_i, s_inter) / Var(s_inter)``
(the shares sum to 1); the loss reports them as parts ``teacher/share_<head>`` next to the
teacher's own InfoNCE ``infonce/inter``, so the training log shows them per step. Distillation
can only help a head when the teacher ranks better than it (``infonce/inter`` below that head's
``infonce/<head>``).
Siblings: ``infonce`` (per-head InfoNCE), ``distill`` (KL to an external teacher).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from embforge.losses.infonce import candidate_logits
from embforge.model.heads import head_scores
from embforge.scoring import M3_SCORE_WEIGHTS
from embforge.types import EmbeddingOutput, LossOutput

__all__ = ["self_distill_loss", "teacher_shares", "M3SelfDistillLoss"]

_HEADS = ("dense", "sparse", "multivector")


def teacher_shares(scores: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Each head's share of ``Var(s_inter)``, ``s_inter = sum_i w_i s_i``, per query row, averaged.

    Args:
        scores: one (Q, C) score matrix per head.
        weights: the teacher weights ``w_i``.

    Returns:
        (heads,) shares (no gradient); they sum to 1 (0 each when ``s_inter`` is constant).

    Example:
        >>> s = torch.tensor([[0.0, 1.0, 2.0]])
        >>> teacher_shares([s, 3 * s], (1.0, 1.0)).tolist()
        [0.25, 0.75]
    """
    with torch.no_grad():
        parts = [w * s.float() for w, s in zip(weights, scores)]
        inter = torch.stack(parts).sum(0)
        centred = inter - inter.mean(1, keepdim=True)
        var = (centred**2).mean(1)
        ok = var > 1e-12
        shares = [((p - p.mean(1, keepdim=True)) * centred).mean(1) for p in parts]
        return torch.stack([(sh[ok] / var[ok]).mean() if ok.any() else sh.new_zeros(()) for sh in shares])


def self_distill_loss(
    s_dense: torch.Tensor,
    s_lex: torch.Tensor,
    s_mul: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.02,
    score_weights: Sequence[float] = M3_SCORE_WEIGHTS,
    loss_weights: Sequence[float] = (1.0, 0.1, 1.0),
    weighted: bool = True,
    distill: bool = True,
) -> LossOutput:
    """The M3 unified loss on per-head candidate scores.

    Args:
        s_dense, s_lex, s_mul: (Q, C) raw scores of each head over the same candidates.
        labels: (Q,) column of each query's positive.
        temperature: tau, applied to every score matrix.
        score_weights: w1, w2, w3 of the teacher ``s_inter`` (weighted variant).
        loss_weights: l1, l2, l3 of the per-head losses (weighted variant).
        weighted: False = the unweighted variant (all weights 1, sums instead of means).
        distill: False = only ``L`` (the warm-up before self-distillation starts, as
            FlagEmbedding's ``self_distill_start_step``).

    Returns:
        LossOutput with parts infonce/{dense,sparse,multivector,inter} (inter: the teacher's own
        InfoNCE), teacher/share_{dense,sparse,multivector} (``teacher_shares``, no gradient) and,
        when distilling, kd/{dense,sparse,multivector}.
    """
    w = tuple(score_weights) if weighted else (1.0, 1.0, 1.0)
    lw = tuple(loss_weights) if weighted else (1.0, 1.0, 1.0)
    scores = [s.float() / temperature for s in (s_dense, s_lex, s_mul)]
    s_inter = w[0] * scores[0] + w[1] * scores[1] + w[2] * scores[2]
    teacher = torch.softmax(s_inter.detach(), dim=-1)
    parts: dict[str, torch.Tensor] = {}
    for name, s in zip(_HEADS, scores):
        parts[f"infonce/{name}"] = F.cross_entropy(s, labels)
    parts["infonce/inter"] = F.cross_entropy(s_inter, labels)
    for name, share in zip(_HEADS, teacher_shares(scores, w)):
        parts[f"teacher/share_{name}"] = share
    hard = sum(lw[i] * parts[f"infonce/{h}"] for i, h in enumerate(_HEADS)) + parts["infonce/inter"]
    if not distill:
        return LossOutput(hard / 4 if weighted else hard, parts)
    for name, s in zip(_HEADS, scores):
        parts[f"kd/{name}"] = -(teacher * torch.log_softmax(s, dim=-1)).sum(-1).mean()
    soft = sum(lw[i] * parts[f"kd/{h}"] for i, h in enumerate(_HEADS))
    total = (hard / 4 + soft / 3) / 2 if weighted else hard + soft
    return LossOutput(total, parts)


class M3SelfDistillLoss:
    """``self_distill_loss`` on an ``EmbeddingOutput`` pair with all three heads (see module doc)."""

    heads = _HEADS

    def __init__(
        self,
        temperature: float = 0.02,
        score_weights: Sequence[float] = M3_SCORE_WEIGHTS,
        loss_weights: Sequence[float] = (1.0, 0.1, 1.0),
        weighted: bool = True,
        in_batch_negatives: bool = True,
        distill: bool = True,
    ) -> None:
        for name, v in (("score_weights", score_weights), ("loss_weights", loss_weights)):
            if len(v) != 3:
                raise ValueError(f"{name} needs 3 values (dense, sparse, multivector), got {list(v)}")
        self.temperature = temperature
        self.score_weights = tuple(score_weights)
        self.loss_weights = tuple(loss_weights)
        self.weighted = weighted
        self.in_batch_negatives = in_batch_negatives
        self.distill = distill

    def __call__(
        self,
        q: EmbeddingOutput,
        d: EmbeddingOutput,
        *,
        group_size: int,
        teacher_scores: torch.Tensor | None = None,
    ) -> LossOutput:
        (s_dense, labels), (s_lex, _), (s_mul, _) = (
            candidate_logits(head_scores(q, d, h), group_size, self.in_batch_negatives) for h in _HEADS
        )
        return self_distill_loss(
            s_dense,
            s_lex,
            s_mul,
            labels,
            temperature=self.temperature,
            score_weights=self.score_weights,
            loss_weights=self.loss_weights,
            weighted=self.weighted,
            distill=self.distill,
        )
