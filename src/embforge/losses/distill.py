"""Distillation from teacher scores with KL divergence.

Hinton et al. 2015 (knowledge distillation); for retrieval: RocketQAv2
(Ren et al. 2021) and the teacher-score KL of BGE / E5 / NV-Retriever style
fine-tuning. For each query the teacher's scores over its own candidates
(positive + hard negatives, as mined with ``embforge mine``) define a target
distribution ``p_t = softmax(t / tau_t)``; the student's scores give
``p_s = softmax(s / tau)``; the loss is ``KL(p_t || p_s)`` averaged over queries.
Siblings: ``self_distill`` (the model is its own teacher), ``infonce``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from embforge.losses.infonce import candidate_logits, info_nce
from embforge.model.heads import head_scores
from embforge.types import EmbeddingOutput, LossOutput

__all__ = ["kl_distill_loss", "DistillKLLoss"]


def kl_distill_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.02, teacher_temperature: float = 1.0
) -> torch.Tensor:
    """``mean_q KL(softmax(teacher/tau_t) || softmax(student/tau))`` over (Q, G) candidate scores."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"teacher scores have shape {tuple(teacher.shape)} but the student scores "
            f"{tuple(student.shape)}: give one teacher score per positive and negative"
        )
    log_p_s = torch.log_softmax(student.float() / temperature, dim=-1)
    log_p_t = torch.log_softmax(teacher.float() / teacher_temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean")


class DistillKLLoss:
    """KL to teacher scores on each head's own-group scores, plus optional InfoNCE.

    Args:
        heads: heads to distil.
        temperature: student tau.
        teacher_temperature: tau of the teacher's scores.
        infonce_weight: add this weight times in-batch InfoNCE (0 = KL only).
    """

    def __init__(
        self,
        heads: Sequence[str] = ("dense",),
        temperature: float = 0.02,
        teacher_temperature: float = 1.0,
        infonce_weight: float = 0.0,
    ) -> None:
        self.heads = tuple(heads)
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature
        self.infonce_weight = infonce_weight

    def __call__(
        self,
        q: EmbeddingOutput,
        d: EmbeddingOutput,
        *,
        group_size: int,
        teacher_scores: torch.Tensor | None = None,
    ) -> LossOutput:
        if teacher_scores is None:
            raise ValueError(
                "the distill loss needs teacher scores: records must carry "
                "'scores' (one per positive and negative), e.g. from `embforge mine`"
            )
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for head in self.heads:
            full = head_scores(q, d, head)
            own, _ = candidate_logits(full, group_size, in_batch_negatives=False)
            loss = kl_distill_loss(own, teacher_scores, self.temperature, self.teacher_temperature)
            parts[f"kd/{head}"] = loss
            if self.infonce_weight:
                nce = info_nce(full, group_size, self.temperature)
                parts[f"infonce/{head}"] = nce
                loss = loss + self.infonce_weight * nce
            total = loss if total is None else total + loss
        if total is None:
            raise ValueError("DistillKLLoss has no head to distil; give heads=('dense', ...)")
        return LossOutput(total, parts)
