"""Masking for MLM and RetroMAE's enhanced decoding (pure torch, seeded)."""

from __future__ import annotations

import pytest
import torch

from embforge.errors import ConfigError
from embforge.pretrain.masking import (
    check_rate,
    enhanced_decoding_mask,
    mask_tokens,
    maskable_positions,
)


def _attn(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()


def test_enhanced_mask_never_self_always_first_never_padding():
    attn = _attn([40, 25, 3], 40)
    m = enhanced_decoding_mask(attn, 0.6, torch.Generator().manual_seed(0))
    assert m.shape == (3, 40, 40) and m.dtype == torch.bool
    for b, L in enumerate([40, 25, 3]):
        rows = m[b, 1:L]  # reconstructed positions
        assert rows[:, 0].all(), "every position must see the first position (h)"
        assert not rows.diagonal(offset=1).any(), "no position may see itself"
        assert not m[b, :, L:].any(), "padding is never visible"
        # h slot and padding rows see only h
        assert m[b, 0].tolist() == [True] + [False] * 39
        assert (m[b, L:, 0].all() and not m[b, L:, 1:].any()) if L < 40 else True


def test_enhanced_mask_rows_are_distinct_samples_at_the_right_rate():
    attn = torch.ones(2, 64, dtype=torch.long)
    m = enhanced_decoding_mask(attn, 0.6, torch.Generator().manual_seed(1))
    rows = m[0, 1:]
    assert len({tuple(r.tolist()) for r in rows}) == rows.shape[0], "each position draws its own context"
    assert not torch.equal(m[0], m[1]), "each text draws its own mask"
    ctx = rows[:, 1:]  # context other than h: each other token kept with prob 0.4
    kept = ctx.sum() / (ctx.shape[0] * (ctx.shape[1] - 1))
    assert 0.34 < float(kept) < 0.46
    again = enhanced_decoding_mask(attn, 0.6, torch.Generator().manual_seed(1))
    assert torch.equal(m, again), "same seed, same mask"


def test_mask_tokens_exact_rate_skips_special_and_padding():
    ids = torch.tensor([[0] + list(range(10, 30)) + [2], [0] + list(range(10, 20)) + [2] + [1] * 10])
    attn = (ids != 1).long()
    keep = maskable_positions(ids, attn, [0, 1, 2, 3, 4])
    masked, labels = mask_tokens(ids, keep, 0.3, 4, torch.arange(5, 40), torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.sum(1).tolist() == [6, 3]  # round(0.3 * 20), round(0.3 * 10)
    assert not chosen[~keep].any()
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_mask_tokens_80_10_10_split():
    ids = torch.randint(10, 1000, (64, 128), generator=torch.Generator().manual_seed(0))
    keep = torch.ones_like(ids, dtype=torch.bool)
    masked, labels = mask_tokens(ids, keep, 0.5, 4, torch.arange(5, 1000), torch.Generator().manual_seed(0))
    chosen = labels != -100
    n = chosen.sum().item()
    as_mask = (masked[chosen] == 4).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    assert 0.77 < as_mask < 0.83 and 0.07 < unchanged < 0.13


def test_mask_tokens_short_text_still_gets_one_target():
    ids = torch.tensor([[0, 7, 2]])
    keep = maskable_positions(ids, torch.ones_like(ids), [0, 2])
    _, labels = mask_tokens(ids, keep, 0.15, 4, torch.arange(5, 9), torch.Generator().manual_seed(0))
    assert labels.tolist() == [[-100, 7, -100]]


def test_rate_out_of_range_names_value_and_fix():
    with pytest.raises(
        ConfigError, match=r"decoder_mask_rate=1.5 is out of range; use a value in \[0.0, 1.0\)"
    ):
        check_rate("decoder_mask_rate", 1.5)
    with pytest.raises(ConfigError, match="out of range"):
        check_rate("x", float("nan"))
