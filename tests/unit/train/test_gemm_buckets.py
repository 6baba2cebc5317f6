"""Bucketed bf16 linear layers: a bounded set of row counts, the same outputs and gradients as
``nn.Linear``, fp32 untouched, and the class swap restored after training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embforge.train.fast_dropout import cpu_training_kernels
from embforge.train.gemm_buckets import BucketedLinear, bucket_linears, bucket_rows


def test_bucket_rows_rounds_up_to_few_sizes_with_little_padding():
    sizes = {bucket_rows(m) for m in range(1, 8193)}
    assert len(sizes) <= 64 + 16  # 8,192 row counts -> <= 80 shapes
    for m in range(1, 8193):
        b = bucket_rows(m)
        assert b >= m and b % 64 == 0
        if m > 1024:
            assert b - m < m / 16


def _pair(seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(seed)
    ref = nn.Linear(24, 40)
    buck = nn.Linear(24, 40)
    buck.load_state_dict(ref.state_dict())
    bucket_linears(buck)
    return ref, buck


@pytest.mark.parametrize("shape", [(3, 7, 24), (5, 24), (130, 24)])
def test_bf16_outputs_and_gradients_equal_the_plain_layer(shape):
    ref, buck = _pair()
    assert type(buck) is BucketedLinear
    x = torch.randn(*shape)
    grads = []
    for layer in (ref, buck):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(xi)
        (y.float() * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        grads.append((y.detach(), xi.grad, layer.weight.grad, layer.bias.grad))
    for a, b in zip(*grads):
        assert a.shape == b.shape
        torch.testing.assert_close(a.float(), b.float(), atol=2e-2, rtol=2e-2)


def test_the_product_runs_on_bucketed_rows_in_bf16_only(monkeypatch):
    _, buck = _pair()
    seen = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(
        torch.nn.functional, "linear", lambda x, w, b=None: seen.append(x.shape[0]) or real(x, w, b)
    )
    x = torch.randn(3, 7, 24)
    buck(x)  # fp32: untouched
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert buck(x).shape == (3, 7, 40)
    assert seen == [3, 64]


def test_training_kernels_bucket_linears_and_restore_them():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    keys = set(model.state_dict())
    weight = model[0].weight
    with cpu_training_kernels(model) as changed:
        assert any("linear" in c for c in changed)
        assert type(model[0]) is BucketedLinear and model[0].weight is weight
    assert type(model[0]) is nn.Linear and type(model[2]) is nn.Linear
    assert set(model.state_dict()) == keys
