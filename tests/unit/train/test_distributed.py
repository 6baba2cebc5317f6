"""2 processes with gloo on CPU: gathered loss and synced gradients equal the 1-process step."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from embforge.losses import M3SelfDistillLoss  # noqa: E402
from embforge.train.step import plain_step  # noqa: E402
from helpers.tiny_heads import TinyThreeHead, distributed_worker, global_batches


def test_two_process_gloo_equals_single_process(tmp_path):
    out_file = tmp_path / "rank0.pt"
    mp.spawn(distributed_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    results = torch.load(out_file, weights_only=True)

    q, d = global_batches()
    model = TinyThreeHead(seed=1)
    ref = plain_step(model, q, d, lambda a, b: M3SelfDistillLoss(temperature=0.1)(a, b, group_size=2))
    ref_grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for name in ("plain", "cached"):
        loss, grads = results[name]
        assert loss == pytest.approx(float(ref.total), rel=1e-5), name
        for n, g in ref_grads.items():
            scale = float(g.abs().max())
            assert torch.allclose(grads[n], g, rtol=1e-4, atol=1e-5 * scale + 1e-8), (name, n)
