"""GradCache: cached sub-batch gradients equal the plain large-batch step, for all heads."""

from __future__ import annotations

import pytest
import torch

from embforge.losses import InfoNCELoss, M3SelfDistillLoss
from embforge.train.step import cached_step, length_groups, plain_step, sub_batches
from embforge.types import Batch
from helpers.tiny_heads import TinyThreeHead, random_batch


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "loss",
    [M3SelfDistillLoss(temperature=0.1), InfoNCELoss(("dense", "multivector"))],
    ids=["m3-all-heads", "infonce-2-heads"],
)
def test_cached_grads_equal_plain(loss):
    model = TinyThreeHead(seed=1)
    q, d = random_batch(6, 9, seed=2), random_batch(12, 14, seed=3)  # G = 2
    assert len(length_groups(d)) > 1  # the grouped paths really split the batch
    fn = lambda a, b: loss(a, b, group_size=2)  # noqa: E731
    plain = plain_step(model, q, d, fn, group_by_length=False)  # one forward per side: the reference
    g_plain = _grads(model)
    for name, run in [
        ("length-grouped", lambda: plain_step(model, q, d, fn)),
        ("cached", lambda: cached_step(model, q, d, fn, sub_batch_size=4)),
    ]:
        model.zero_grad(set_to_none=True)
        out = run()
        g = _grads(model)
        assert float(out.total) == pytest.approx(float(plain.total), rel=1e-5), name
        assert set(g_plain) == set(g), name
        assert "colbert_linear.weight" in g
        assert ("sparse_linear.weight" in g) == ("sparse" in loss.heads)
        for n in g_plain:
            scale = float(g_plain[n].abs().max())
            assert torch.allclose(g_plain[n], g[n], rtol=1e-4, atol=1e-5 * scale + 1e-8), (name, n)


def test_cached_replays_dropout():
    model = TinyThreeHead(seed=1, dropout=0.3).train()
    q, d = random_batch(4, 8, seed=4), random_batch(4, 8, seed=5)
    seen = []

    def encode(b):
        out = model(b)
        seen.append(out.dense.detach().clone())
        return out

    torch.manual_seed(0)
    cached_step(encode, q, d, lambda a, b: InfoNCELoss()(a, b, group_size=1), sub_batch_size=2)
    # the no-grad sub-batches, then the same sub-batches re-encoded with grad: identical dropout masks
    half = len(seen) // 2
    assert half >= 4
    for first, again in zip(seen[:half], seen[half:]):
        assert torch.equal(first, again)


def test_sub_batches_trim_right_padding_only():
    b = Batch(
        torch.tensor([[1, 2, 0, 0], [1, 2, 3, 0], [1, 2, 3, 4]]),
        torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]),
    )
    parts = sub_batches(b, 2)
    assert [p.input_ids.shape[1] for p in parts] == [3, 4]
    left = Batch(torch.tensor([[0, 0, 1, 2]]), torch.tensor([[0, 0, 1, 1]]))
    assert sub_batches(left, 1)[0].input_ids.shape[1] == 4


def _left_pad(b: Batch) -> Batch:
    ids, mask = torch.zeros_like(b.input_ids), torch.zeros_like(b.attention_mask)
    for i, n in enumerate(b.attention_mask.sum(1).tolist()):
        ids[i, ids.shape[1] - n :] = b.input_ids[i, :n]
        mask[i, mask.shape[1] - n :] = 1
    return Batch(ids, mask)


def test_left_padded_batches_keep_sides_apart_and_match():
    model = TinyThreeHead(seed=1)
    q, d = _left_pad(random_batch(4, 8, seed=6)), _left_pad(random_batch(8, 12, seed=7))
    loss = InfoNCELoss(("dense", "sparse"), temperature=0.1)
    fn = lambda a, b: loss(a, b, group_size=2)  # noqa: E731
    ref = plain_step(model, q, d, fn, group_by_length=False)
    g_ref = _grads(model)
    model.zero_grad(set_to_none=True)
    out = cached_step(model, q, d, fn, sub_batch_size=3)
    g = _grads(model)
    assert float(out.total) == pytest.approx(float(ref.total), rel=1e-5)
    for n in g_ref:
        scale = float(g_ref[n].abs().max())
        assert torch.allclose(g_ref[n], g[n], rtol=1e-4, atol=1e-5 * scale + 1e-8), n
