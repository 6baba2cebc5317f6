"""Fast CPU dropout: same Bernoulli distribution and scaling as F.dropout, replayable masks,
HF attention with it equal to sdpa without dropout, and everything restored after training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertModel

from embforge.train.fast_dropout import (
    ATTENTION_NAME,
    FastDropout,
    _eager_attention,
    cpu_training_kernels,
    dropout_mask,
    fast_dropout,
)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5])
def test_mask_keeps_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    keep = dropout_mask((1000, 1001), p)  # odd count: the last 64-bit draw is cut
    assert keep.dtype == torch.bool and keep.shape == (1000, 1001)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.002  # 1e6 draws: sd 0.0005
    # the four 16-bit lanes of a draw are independent: no lane is biased
    lanes = keep.flatten()[:1_000_000].view(-1, 4).float().mean(0)
    assert torch.all((lanes - (1 - p)).abs() < 0.004)


def test_fast_dropout_scales_kept_values_and_backprops_through_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = fast_dropout(x, 0.2)
    kept = y != 0
    assert 0.7 < kept.float().mean() < 0.9
    assert torch.allclose(y[kept], x[kept] / 0.8)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.8)
    assert torch.equal(fast_dropout(x, 0.2, training=False), x)
    assert torch.equal(fast_dropout(x, 0.0), x)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_masks_replay_from_the_rng_state_and_follow_the_dtype():
    x = torch.randn(8, 40).bfloat16()
    state = torch.get_rng_state()
    a = fast_dropout(x, 0.1)
    torch.set_rng_state(state)
    b = fast_dropout(x, 0.1)
    assert torch.equal(a, b) and a.dtype == torch.bfloat16  # GradCache re-encodes with the same masks
    assert not torch.equal(a, fast_dropout(x, 0.1))


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_eager_attention_equals_sdpa_without_dropout(mask_kind):
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    keep = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    keep[1, :, :, 3:] = False  # padded keys of row 1
    mask = {"none": None, "bool": keep, "float": torch.zeros(2, 1, 5, 5).masked_fill(~keep, -1e9)}[mask_kind]
    module = torch.nn.Module().eval()  # eval: dropout p is passed but not applied
    module.is_causal = False
    out, _ = _eager_attention(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3).transpose(1, 2)
    assert out.shape == (2, 5, 3, 8)
    assert torch.allclose(out, ref, atol=1e-5)


def _tiny_bert() -> BertModel:
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        attn_implementation="sdpa",
    )
    return BertModel(cfg)


def test_training_kernels_swap_and_restore_a_bert():
    torch.manual_seed(3)
    model = _tiny_bert()
    ids = torch.randint(5, 50, (4, 10))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    model.eval()
    ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    keys = set(model.state_dict())
    with cpu_training_kernels(model) as changed:
        assert changed and model.config._attn_implementation == ATTENTION_NAME
        assert all(type(m) is not torch.nn.Dropout for m in model.modules())
        assert any(isinstance(m, FastDropout) for m in model.modules())
        assert torch.allclose(model(input_ids=ids, attention_mask=mask).last_hidden_state, ref, atol=1e-5)
        model.train()
        state = torch.get_rng_state()
        a = model(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.set_rng_state(state)
        b = model(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(a, b) and not torch.allclose(a, ref, atol=1e-3)
        a.sum().backward()
        assert model.embeddings.word_embeddings.weight.grad is not None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert model(input_ids=ids, attention_mask=mask).last_hidden_state.isfinite().all()
    assert model.config._attn_implementation == "sdpa"
    assert all(type(m) is not FastDropout for m in model.modules())
    assert all(type(m).__name__ != "BucketedLinear" for m in model.modules())
    assert set(model.state_dict()) == keys


def test_training_kernels_leave_gpu_models_alone():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    model.to("meta")  # not a CPU model: nothing is swapped
    with cpu_training_kernels(model) as changed:
        assert changed == [] and type(model[1]) is torch.nn.Dropout
