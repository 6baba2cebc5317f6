"""Losses on embeddings and scores (never on the model).

Every loss is a pure function of embeddings and scores, called as
``loss(q, d, group_size=G, teacher_scores=None) -> LossOutput`` with ``q`` an
``EmbeddingOutput`` of Q queries and ``d`` one of Q*G documents grouped per query
(positive first). Losses never call the model nor backpropagate: the step
(``embforge.train.step``) does. ``LOSSES`` maps config names to builders; add a
loss by registering a builder here; ``loss.name`` in configs accepts it at once.

| name          | what                                                      | paper |
| ------------- | --------------------------------------------------------- | ----- |
| infonce       | InfoNCE per head (+ Matryoshka dims), in-batch on/off     | CPC, DPR, M3, Arctic |
| m3            | M3 self-knowledge distillation over dense/sparse/multivec | BGE M3-Embedding |
| simcse_unsup  | SimCSE, same text twice with dropout                      | SimCSE |
| simcse_sup    | SimCSE on NLI (anchor, entailment, contradiction)         | SimCSE |
| distill       | KL to teacher scores (+ optional InfoNCE)                 | Hinton 2015, RocketQAv2 |
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from embforge.losses.distill import DistillKLLoss, kl_distill_loss
from embforge.losses.infonce import InfoNCELoss, WithMatryoshka, candidate_logits, info_nce
from embforge.losses.matryoshka import matryoshka_dense, matryoshka_loss
from embforge.losses.self_distill import M3SelfDistillLoss, self_distill_loss, teacher_shares
from embforge.losses.simcse import SimCSELoss, simcse_sup_loss, simcse_unsup_loss
from embforge.registry import Registry
from embforge.scoring import M3_SCORE_WEIGHTS
from embforge.types import EmbeddingOutput, LossOutput

__all__ = [
    "ContrastiveLoss",
    "LOSSES",
    "build_loss",
    "InfoNCELoss",
    "M3SelfDistillLoss",
    "SimCSELoss",
    "DistillKLLoss",
    "WithMatryoshka",
    "info_nce",
    "candidate_logits",
    "self_distill_loss",
    "teacher_shares",
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


def _tau(temperature: float | None) -> dict[str, float]:
    """The temperature keyword, or none so that the loss keeps its paper default."""
    return {} if temperature is None else {"temperature": temperature}


# Each builder takes every loss setting by keyword (``LossConfig``'s fields, ``heads`` and,
# for m3, ``distill``) and keeps the ones its loss uses.


@LOSSES.register("infonce")
def _infonce(
    *,
    heads: Sequence[str] = ("dense",),
    temperature: float | None = None,
    in_batch_negatives: bool = True,
    head_weights: dict[str, float] | None = None,
    matryoshka_dims: Sequence[int] = (),
    matryoshka_weights: Sequence[float] | None = None,
    **_: Any,
) -> ContrastiveLoss:
    return InfoNCELoss(
        heads=heads,
        in_batch_negatives=in_batch_negatives,
        head_weights=head_weights,
        matryoshka_dims=matryoshka_dims,
        matryoshka_weights=matryoshka_weights,
        **_tau(temperature),
    )


@LOSSES.register("m3")
def _m3(
    *,
    temperature: float | None = None,
    score_weights: Sequence[float] = M3_SCORE_WEIGHTS,
    loss_weights: Sequence[float] = (1.0, 0.1, 1.0),
    weighted: bool = True,
    in_batch_negatives: bool = True,
    distill: bool = True,
    matryoshka_dims: Sequence[int] = (),
    matryoshka_weights: Sequence[float] | None = None,
    **_: Any,
) -> ContrastiveLoss:
    m3 = M3SelfDistillLoss(
        score_weights=score_weights,
        loss_weights=loss_weights,
        weighted=weighted,
        in_batch_negatives=in_batch_negatives,
        distill=distill,
        **_tau(temperature),
    )
    if not matryoshka_dims:
        return m3
    return WithMatryoshka(m3, matryoshka_dims, matryoshka_weights, m3.temperature, in_batch_negatives)


@LOSSES.register("simcse_unsup")
def _simcse_unsup(*, temperature: float | None = None, **_: Any) -> ContrastiveLoss:
    return SimCSELoss(False, **_tau(temperature))


@LOSSES.register("simcse_sup")
def _simcse_sup(*, temperature: float | None = None, **_: Any) -> ContrastiveLoss:
    return SimCSELoss(True, **_tau(temperature))


@LOSSES.register("distill")
def _distill(
    *,
    heads: Sequence[str] = ("dense",),
    temperature: float | None = None,
    teacher_temperature: float = 1.0,
    infonce_weight: float = 0.0,
    **_: Any,
) -> ContrastiveLoss:
    return DistillKLLoss(
        heads=heads,
        teacher_temperature=teacher_temperature,
        infonce_weight=infonce_weight,
        **_tau(temperature),
    )


def build_loss(name: str, **settings: Any) -> ContrastiveLoss:
    """Build the loss registered as ``name`` (``unknown loss ...; choose from`` otherwise).

    ``settings`` are keyword settings (``heads``, ``temperature``, ...); each loss takes
    the ones it uses and ignores the rest. ``temperature=None`` keeps the paper default.
    """
    return LOSSES.get(name)(**settings)
