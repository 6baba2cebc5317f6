"""Recipe ``contrastive``: fine-tune or contrastively pretrain an Encoder.

One recipe covers M3 unified fine-tuning (``loss.name: m3``), Arctic-Embed
pretraining / fine-tuning (``infonce`` + Matryoshka), SimCSE (``simcse_unsup``,
``simcse_sup``) and distillation from teacher scores (``distill``): they differ
in data, loss and schedule only. See ``configs/*.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from embforge.config import (
    LoopConfig,
    ModelConfig,
    OptimConfig,
    ScheduleConfig,
    config_to_dict,
    register_recipe,
)

__all__ = ["DataConfig", "LossConfig", "ContrastiveConfig", "run"]


@dataclass
class DataConfig:
    """Training data.

    Attributes:
        train_files: JSONL / JSONL.gz / parquet records (pair, triple, example with
            ``neg`` and teacher ``pos_scores``/``neg_scores``) or ``.txt`` (one sentence a line).
        num_negatives: hard negatives per query (N; each example must have at least N).
        query_max_length: token limit for queries.
        doc_max_length: token limit for documents.
        group_by_length: batch texts of similar length together (less padding).
        one_source_per_batch: draw every batch from one source (file / ``source`` field, per ``lang``).
    """

    train_files: list[str]
    num_negatives: int = 0
    query_max_length: int = 64
    doc_max_length: int = 256
    group_by_length: bool = True
    one_source_per_batch: bool = True

    def validate(self) -> list[str]:
        errs = []
        if self.num_negatives < 0:
            errs.append(f"num_negatives: must be >= 0, got {self.num_negatives}")
        for k in ("query_max_length", "doc_max_length"):
            if getattr(self, k) < 2:
                errs.append(f"{k}: must be >= 2 tokens, got {getattr(self, k)}")
        return errs


@dataclass
class LossConfig:
    """The loss (see ``embforge.losses``).

    Attributes:
        name: infonce | m3 | simcse_unsup | simcse_sup | distill.
        temperature: tau; None = the loss's paper default (0.02, SimCSE 0.05).
        in_batch_negatives: False = own positive + own hard negatives only (NV-Embed stage 2).
        head_weights: infonce: weight per head.
        matryoshka_dims: infonce and m3: extra truncation dims of the dense head (Arctic: [256]).
        matryoshka_weights: one weight per matryoshka dim (default 1 each).
        score_weights: m3: w1, w2, w3 of the teacher score.
        loss_weights: m3: l1, l2, l3 of the per-head losses.
        weighted: m3: False = the unweighted variant.
        self_distill_start_step: m3: steps before self-distillation joins (only ``L`` until then).
        teacher_temperature: distill: tau of the teacher scores.
        infonce_weight: distill: weight of an added InfoNCE term.
    """

    name: Literal["infonce", "m3", "simcse_unsup", "simcse_sup", "distill"] = "infonce"
    temperature: float | None = None
    in_batch_negatives: bool = True
    head_weights: dict[str, float] = field(default_factory=dict)
    matryoshka_dims: list[int] = field(default_factory=list)
    matryoshka_weights: list[float] | None = None
    score_weights: list[float] = field(default_factory=lambda: [1.0, 0.3, 1.0])
    loss_weights: list[float] = field(default_factory=lambda: [1.0, 0.1, 1.0])
    weighted: bool = True
    self_distill_start_step: int = 0
    teacher_temperature: float = 1.0
    infonce_weight: float = 0.0

    def validate(self) -> list[str]:
        errs = []
        if self.self_distill_start_step < 0:
            errs.append(f"self_distill_start_step: must be >= 0, got {self.self_distill_start_step}")
        if self.temperature is not None and self.temperature <= 0:
            errs.append(f"temperature: must be > 0, got {self.temperature}")
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dims):
            errs.append(
                f"matryoshka_weights: {len(self.matryoshka_weights)} weights for "
                f"{len(self.matryoshka_dims)} matryoshka_dims; give one per dim"
            )
        for k in ("score_weights", "loss_weights"):
            if len(getattr(self, k)) != 3:
                errs.append(f"{k}: needs 3 values (dense, sparse, multivector), got {getattr(self, k)}")
        return errs

    def build(self, heads: list[str], step: int | None = None):
        """The loss object; for m3, ``step <= self_distill_start_step`` gives the loss without L'."""
        from embforge.losses import build_loss

        tau = {} if self.temperature is None else {"temperature": self.temperature}
        if self.name == "infonce":
            return build_loss(
                "infonce",
                heads=heads,
                in_batch_negatives=self.in_batch_negatives,
                head_weights=self.head_weights,
                matryoshka_dims=self.matryoshka_dims,
                matryoshka_weights=self.matryoshka_weights,
                **tau,
            )
        if self.name == "m3":
            m3 = build_loss(
                "m3",
                score_weights=self.score_weights,
                loss_weights=self.loss_weights,
                weighted=self.weighted,
                in_batch_negatives=self.in_batch_negatives,
                distill=step is None or step > self.self_distill_start_step,
                **tau,
            )
            if not self.matryoshka_dims:
                return m3
            from embforge.losses.matryoshka import WithMatryoshka  # M3 + Matryoshka (issue 6 quickstart)

            return WithMatryoshka(
                m3, self.matryoshka_dims, self.matryoshka_weights, m3.temperature, self.in_batch_negatives
            )
        if self.name == "distill":
            return build_loss(
                "distill",
                heads=heads,
                teacher_temperature=self.teacher_temperature,
                infonce_weight=self.infonce_weight,
                **tau,
            )
        return build_loss(self.name, **tau)


@dataclass
class ContrastiveConfig:
    """``recipe: contrastive`` (see the module doc and configs/)."""

    data: DataConfig
    recipe: str = "contrastive"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> list[str]:
        errs = []
        heads = self.model.heads
        if self.loss.name == "m3" and sorted(heads) != ["dense", "multivector", "sparse"]:
            errs.append(
                f"model.heads: the m3 loss trains all three heads; set model.heads to "
                f"[dense, sparse, multivector] (got {heads})"
            )
        if self.loss.name.startswith("simcse") and heads != ["dense"]:
            errs.append(
                f"model.heads: SimCSE trains the dense head only; set model.heads to [dense] (got {heads})"
            )
        need = {"simcse_sup": 1, "simcse_unsup": 0}.get(self.loss.name)
        if need is not None and self.data.num_negatives != need:
            errs.append(
                f"data.num_negatives: {self.loss.name} needs {need} negative(s) per query "
                f"(got {self.data.num_negatives})"
            )
        if self.loss.matryoshka_dims and "dense" not in heads:
            errs.append(
                "loss.matryoshka_dims: Matryoshka applies to the dense head; add dense to model.heads"
            )
        if not self.loss.in_batch_negatives and self.data.num_negatives == 0:
            errs.append(
                "loss.in_batch_negatives: with in-batch negatives off every query needs hard "
                "negatives; set data.num_negatives >= 1"
            )
        return errs


@register_recipe(
    "contrastive",
    ContrastiveConfig,
    "InfoNCE / M3 self-distillation / SimCSE / KL distillation on an Encoder",
)
def run(cfg: ContrastiveConfig) -> Any:
    """Train ``cfg.model`` on ``cfg.data``; returns ``TrainResult``."""
    from embforge.train.contrastive import run_contrastive

    return run_contrastive(cfg, config_to_dict(cfg))


def total_steps(loop: LoopConfig, batches_per_epoch: int) -> int:
    """``loop.max_steps`` or ``ceil(epochs * batches_per_epoch)``."""
    if loop.max_steps is not None:
        return loop.max_steps
    return max(1, math.ceil(loop.epochs * batches_per_epoch))
