"""Learning-rate schedules as multipliers of the peak rate.

``lr_multiplier(cfg, total)(s)`` is the factor for optimizer step ``s`` (0-based).
Warmup ramps ``(s+1)/W`` so the first step already learns. Each schedule is a
function in :data:`SCHEDULES`; ``ScheduleConfig.name`` is checked against it.

Example:
    >>> f = lr_multiplier(ScheduleConfig("linear_decay", decay_steps=4), total_steps=6)
    >>> [round(f(s), 2) for s in range(6)]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    >>> f = lr_multiplier(ScheduleConfig("wsd", warmup_ratio=0.2, decay_ratio=0.4), total_steps=10)
    >>> [round(f(s), 2) for s in range(10)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from torch.optim.lr_scheduler import LambdaLR

from embforge.config import Choice
from embforge.registry import Registry

__all__ = ["SCHEDULES", "ScheduleConfig", "lr_multiplier", "build_scheduler"]

# name -> f(cfg, step, total, warmup, linear) -> multiplier after the warmup
SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, as a multiplier of ``optim.lr`` per step.

    Names:
        constant: optional warmup, then flat.
        warmup_linear: linear warmup over ``warmup_ratio`` (or ``warmup_steps``) of the
            steps, then linear decay to ``min_lr_ratio`` at the last step (M3 stage 2).
        wsd: warmup-stable-decay (Arctic-Embed pretraining): warmup, flat, then a linear
            decay over the last ``decay_ratio`` of the steps.
        linear_decay: no warmup; linear decay from the peak to ``min_lr_ratio`` over the
            first ``decay_steps`` steps, then flat (Arctic-Embed fine-tuning: 6,000 of 9,342).

    Attributes:
        name: one of :data:`SCHEDULES` (the names above).
        warmup_ratio: warmup length as a fraction of the total steps.
        warmup_steps: warmup length in steps (overrides ``warmup_ratio`` when set).
        decay_ratio: wsd only: fraction of steps spent decaying.
        decay_steps: linear_decay only: number of decay steps (None = all steps).
        min_lr_ratio: final multiplier.
    """

    name: Annotated[str, Choice(SCHEDULES)] = "warmup_linear"
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    decay_ratio: float = 0.1
    decay_steps: int | None = None
    min_lr_ratio: float = 0.0

    def validate(self) -> list[str]:
        errs = []
        for k in ("warmup_ratio", "decay_ratio", "min_lr_ratio"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                errs.append(f"{k}: must be within [0, 1], got {v}")
        if self.name == "linear_decay" and (self.warmup_ratio or self.warmup_steps):
            errs.append("warmup_ratio/warmup_steps: linear_decay has no warmup; use warmup_linear or wsd")
        return errs


Linear = Callable[[float], float]


@SCHEDULES.register("constant")
def _constant(cfg: ScheduleConfig, s: int, total: int, w: int, linear: Linear) -> float:
    return 1.0


@SCHEDULES.register("warmup_linear")
def _warmup_linear(cfg: ScheduleConfig, s: int, total: int, w: int, linear: Linear) -> float:
    return linear((total - s) / max(1, total - w))


@SCHEDULES.register("wsd")
def _wsd(cfg: ScheduleConfig, s: int, total: int, w: int, linear: Linear) -> float:
    start = total - int(round(cfg.decay_ratio * total))
    return 1.0 if s < start else linear((total - s) / max(1, total - start))


@SCHEDULES.register("linear_decay")
def _linear_decay(cfg: ScheduleConfig, s: int, total: int, w: int, linear: Linear) -> float:
    n = cfg.decay_steps or total
    return linear(1.0 - s / n)


def _warmup_steps(cfg: ScheduleConfig, total: int) -> int:
    if cfg.name == "linear_decay":
        return 0  # no warmup by definition (validate() rejects one)
    if cfg.warmup_steps is not None:
        return int(cfg.warmup_steps)
    return int(round(cfg.warmup_ratio * total))


def lr_multiplier(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The schedule ``cfg`` over ``total_steps`` optimizer steps."""
    total = max(1, int(total_steps))
    w = _warmup_steps(cfg, total)
    lo = cfg.min_lr_ratio
    after_warmup = SCHEDULES.get(cfg.name)

    def linear(frac_left: float) -> float:
        return lo + (1.0 - lo) * max(0.0, min(1.0, frac_left))

    def f(s: int) -> float:
        if s < w:
            return (s + 1) / w
        return after_warmup(cfg, s, total, w, linear)

    return f


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int) -> LambdaLR:
    """A ``torch.optim.lr_scheduler.LambdaLR`` following ``cfg``."""
    return LambdaLR(optimizer, lr_multiplier(cfg, total_steps))
