"""Learning-rate schedules as multipliers of the peak rate (see ``ScheduleConfig``).

``multiplier(s)`` is the factor for optimizer step ``s`` (0-based). Warmup ramps
``(s+1)/W`` so the first step already learns.

Example:
    >>> from embforge.config import ScheduleConfig
    >>> f = lr_multiplier(ScheduleConfig("linear_decay", decay_steps=4), total_steps=6)
    >>> [round(f(s), 2) for s in range(6)]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    >>> f = lr_multiplier(ScheduleConfig("wsd", warmup_ratio=0.2, decay_ratio=0.4), total_steps=10)
    >>> [round(f(s), 2) for s in range(10)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
"""

from __future__ import annotations

from collections.abc import Callable

from embforge.config import ScheduleConfig

__all__ = ["lr_multiplier", "build_scheduler"]


def _warmup_steps(cfg: ScheduleConfig, total: int) -> int:
    if cfg.warmup_steps is not None:
        return int(cfg.warmup_steps)
    return int(round(cfg.warmup_ratio * total))


def lr_multiplier(cfg: ScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """The schedule ``cfg`` over ``total_steps`` optimizer steps."""
    total = max(1, int(total_steps))
    w = _warmup_steps(cfg, total)
    lo = cfg.min_lr_ratio

    def linear(frac_left: float) -> float:
        return lo + (1.0 - lo) * max(0.0, min(1.0, frac_left))

    def f(s: int) -> float:
        if cfg.name != "linear_decay" and s < w:
            return (s + 1) / w
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "warmup_linear":
            return linear((total - s) / max(1, total - w))
        if cfg.name == "wsd":
            start = total - int(round(cfg.decay_ratio * total))
            return 1.0 if s < start else linear((total - s) / max(1, total - start))
        if cfg.name == "linear_decay":
            n = cfg.decay_steps or total
            return linear(1.0 - s / n)
        raise ValueError(f"unknown schedule {cfg.name!r}")

    return f


def build_scheduler(optimizer, cfg: ScheduleConfig, total_steps: int):
    """A ``torch.optim.lr_scheduler.LambdaLR`` following ``cfg``."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_multiplier(cfg, total_steps))
