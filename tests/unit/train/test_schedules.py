"""Learning-rate schedules: WSD, no-warmup linear decay over N of M steps, warmup ratio + linear."""

from __future__ import annotations

import pytest
import torch

from embforge.train.loop import build_optimizer
from embforge.train.schedules import build_scheduler, lr_multiplier
from embforge.train.settings import OptimConfig, ScheduleConfig


def test_arctic_finetune_linear_decay_over_6000_of_9342():
    f = lr_multiplier(ScheduleConfig("linear_decay", decay_steps=6000), 9342)
    assert f(0) == 1.0
    assert f(3000) == pytest.approx(0.5)
    assert f(6000) == 0.0 and f(9341) == 0.0


def test_wsd_warmup_stable_decay():
    f = lr_multiplier(ScheduleConfig("wsd", warmup_ratio=0.1, decay_ratio=0.2, min_lr_ratio=0.1), 100)
    assert [round(f(s), 3) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert f(10) == 1.0 and f(79) == 1.0
    assert f(80) == pytest.approx(1.0) and f(90) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(99) == pytest.approx(0.1 + 0.9 * 0.05)


def test_warmup_ratio_then_linear():
    f = lr_multiplier(ScheduleConfig("warmup_linear", warmup_ratio=0.1), 50)
    assert [round(f(s), 3) for s in (0, 4)] == [0.2, 1.0]
    assert f(5) == pytest.approx(1.0) and f(27) == pytest.approx(0.5, abs=0.02)
    assert 0 < f(49) < 0.05


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(4, 4)
    opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # no decay on the bias
    sched = build_scheduler(opt, ScheduleConfig("linear_decay", decay_steps=4), 8)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0, 0.0])
