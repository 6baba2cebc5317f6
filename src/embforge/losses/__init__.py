"""Losses on embeddings and scores (never on the model).

Every loss is called as ``loss(q, d, group_size=G, teacher_scores=None) -> LossOutput``
with ``q`` an ``EmbeddingOutput`` of Q queries and ``d`` one of Q*G documents
grouped per query (positive first). ``LOSSES`` maps config names to builders;
add a loss by registering a builder, nothing else changes.

| name          | what                                                      | paper |
| ------------- | --------------------------------------------------------- | ----- |
| infonce       | InfoNCE per head (+ Matryoshka dims), in-batch on/off     | CPC, DPR, M3, Arctic |
| m3            | M3 self-knowledge distillation over dense/sparse/multivec | BGE M3-Embedding |
| simcse_unsup  | SimCSE, same text twice with dropout                      | SimCSE |
| simcse_sup    | SimCSE on NLI (anchor, entailment, contradiction)         | SimCSE |
| distill       | KL to teacher scores (+ optional InfoNCE)                 | Hinton 2015, RocketQAv2 |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from embforge.losses.distill import DistillKLLoss, kl_distill_loss
from embforge.losses.infonce import InfoNCELoss, candidate_logits, info_nce
from embforge.losses.matryoshka import matryoshka_dense, matryoshka_loss
from embforge.losses.self_distill import M3SelfDistillLoss, self_distill_loss
from embforge.losses.simcse import SimCSELoss, simcse_sup_loss, simcse_unsup_loss
from embforge.registry import Registry
from embforge.types import EmbeddingOutput, LossOutput

__all__ = [
    "ContrastiveLoss",
    "LOSSES",
    "build_loss",
    "InfoNCELoss",
    "M3SelfDistillLoss",
    "SimCSELoss",
    "DistillKLLoss",
    "info_nce",
    "candidate_logits",
    "self_distill_loss",
    "matryoshka_dense",
    "matryoshka_loss",
    "simcse_unsup_loss",
    "simcse_sup_loss",
    "kl_distill_loss",
]


class ContrastiveLoss(Protocol):
    """What the training loop calls."""

    def __call__(
        self, q: EmbeddingOutput, d: EmbeddingOutput, *, group_size: int, teacher_scores: Any = None
    ) -> LossOutput: ...


LOSSES: Registry[Callable[..., ContrastiveLoss]] = Registry("loss")
LOSSES.add("infonce", InfoNCELoss)
LOSSES.add("m3", M3SelfDistillLoss)
LOSSES.add("simcse_unsup", lambda temperature=0.05, **_: SimCSELoss(False, temperature))
LOSSES.add("simcse_sup", lambda temperature=0.05, **_: SimCSELoss(True, temperature))
LOSSES.add("distill", DistillKLLoss)


def build_loss(name: str, **kwargs: Any) -> ContrastiveLoss:
    """Build the loss registered as ``name`` (``unknown loss ...; choose from`` otherwise)."""
    return LOSSES.get(name)(**kwargs)
