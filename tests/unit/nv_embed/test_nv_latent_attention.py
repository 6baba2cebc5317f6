"""Latent-attention pooling: shapes, registry, and that unpooled (instruction) tokens never enter the mean."""

from __future__ import annotations

import pytest
import torch

from embforge.errors import ConfigError
from embforge.model.pooling import POOLINGS, build_pooling
from embforge.nv_embed.latent_attention import (
    LastTokenPooling,
    LatentAttentionPooling,
    last_token,
    masked_mean,
)


def _head(h=32, **kw):
    torch.manual_seed(0)
    return LatentAttentionPooling(h, num_latents=kw.pop("num_latents", 16), num_heads=4, **kw).eval()


def test_registered_and_shapes():
    assert {"latent_attention", "last_token", "mean"} <= set(POOLINGS.names())
    la = build_pooling("latent_attention", 32, num_latents=8, num_heads=4)
    assert isinstance(la, LatentAttentionPooling) and la.latents.shape == (8, 32)
    assert LatentAttentionPooling(64).latents.shape == (512, 64)  # paper defaults: 512 latents, 8 heads
    assert LatentAttentionPooling(64).num_heads == 8
    hidden = torch.randn(3, 7, 32)
    out = la(hidden, torch.ones(3, 7, dtype=torch.long))
    assert out.shape == (3, 32)
    out.sum().backward()
    assert la.latents.grad is not None and la.latents.grad.abs().sum() > 0  # latents are trainable
    assert la.mlp[0].out_features == 4 * 32 and isinstance(la.mlp[1], torch.nn.GELU)


def test_same_seed_same_weights():
    a, b = LatentAttentionPooling(32, 8, 4, seed=3), LatentAttentionPooling(32, 8, 4, seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_unpooled_tokens_do_not_enter_the_mean():
    la = _head()
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 6, 32, generator=g)
    mask = torch.tensor([[1, 0, 0, 1, 1, 1], [1, 0, 1, 1, 0, 0]])  # 0 = instruction / padding
    with torch.no_grad():
        ref = la(hidden, mask)
        changed = hidden.clone()
        changed[mask == 0] += 5.0 * torch.randn(int((mask == 0).sum()), 32, generator=g)
        torch.testing.assert_close(la(changed, mask), ref)  # only via the backbone's attention
        changed = hidden.clone()
        changed[0, 3] += 1.0
        assert (la(changed, mask)[0] - ref[0]).abs().max() > 1e-4
        # each token's output depends on that token only (it attends to the latents, not to tokens)
        tok = la.token_outputs(hidden)
        torch.testing.assert_close(ref, masked_mean(tok, mask))
        other = hidden.clone()
        other[:, 1:] = 0
        torch.testing.assert_close(la.token_outputs(other)[:, 0], tok[:, 0])


def test_last_token_and_errors():
    h = torch.arange(12.0).view(2, 3, 2)
    m = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert LastTokenPooling()(h, m).tolist() == [[2.0, 3.0], [10.0, 11.0]]
    assert last_token(h, torch.tensor([[0, 1, 1], [1, 0, 0]])).tolist() == [[4.0, 5.0], [6.0, 7.0]]
    with pytest.raises(ConfigError, match="hidden_size 30 is not a positive multiple of num_heads 8"):
        LatentAttentionPooling(30)
    with pytest.raises(ConfigError, match="unknown pooling 'latent'; choose from: .*latent_attention"):
        build_pooling("latent", 32)
