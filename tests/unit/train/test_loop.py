"""The Trainer's callbacks and the shared step helpers, on a toy model."""

from __future__ import annotations

import itertools

import torch

from embforge.train.loop import Trainer
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig
from embforge.train.step import forward_backward
from embforge.types import LossOutput


class _Batches:
    def __init__(self) -> None:
        self.pos = 0

    def __iter__(self):
        for i in itertools.count(self.pos):
            self.pos = i + 1
            yield torch.full((2, 3), float(i % 3))

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> LossOutput:
        loss = self.lin(x).pow(2).mean()
        return LossOutput(loss, {"toy": loss.detach()})


def test_callbacks_see_every_step_after_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = _Toy()
    seen = []

    def cb(step, rec):
        root = tmp_path / "checkpoints"
        ckpts = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        seen.append((step, rec["step"], "toy" in rec, ckpts[-1] if ckpts else None))

    loop = LoopConfig(output_dir=str(tmp_path), max_steps=4, checkpoint_every=2, progress=False)
    trainer = Trainer(
        model,
        lambda b, step: forward_backward(model, b),
        _Batches(),
        loop,
        OptimConfig(lr=1e-2),
        ScheduleConfig("constant"),
        4,
        callbacks=[cb],
    )
    result = trainer.fit()
    assert [s for s, *_ in seen] == [1, 2, 3, 4]
    assert all(s == r and has for s, r, has, _ in seen)
    assert seen[1][3] == "step-00000002" and seen[3][3] == "step-00000004"
    assert len(result.log) == 4 and not any(p.grad is not None for p in model.parameters())


def test_forward_backward_detaches_and_fills_gradients():
    model = _Toy()
    out = forward_backward(model, torch.ones(2, 3))
    assert not out.total.requires_grad and not out.parts["toy"].requires_grad
    assert model.lin.weight.grad is not None
