"""The enhanced decoder computes softmax(Q K^T / sqrt(d) + M) V with Q from the query stream, K/V from content."""

from __future__ import annotations

import torch

from embforge.pretrain.decoder import DecoderConfig, EnhancedDecoderLayer
from embforge.pretrain.masking import enhanced_decoding_mask


def _setup():
    torch.manual_seed(0)
    layer = EnhancedDecoderLayer(DecoderConfig(16, 2, 32)).eval()
    q, c = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    attn = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    return layer, q, c, enhanced_decoding_mask(attn, 0.6, torch.Generator().manual_seed(0))


def test_two_stream_attention_matches_the_formula():
    layer, q, c, m = _setup()
    B, T, H = q.shape
    Q, K, V = layer._split(layer.query(q)), layer._split(layer.key(c)), layer._split(layer.value(c))
    s = (Q @ K.transpose(-1, -2) / (H // 2) ** 0.5).masked_fill(~m[:, None], float("-inf"))
    ctx = (s.softmax(-1) @ V).transpose(1, 2).reshape(B, T, H)
    x = layer.attn_norm(layer.attn_out(ctx) + q)  # residual on the query stream
    want = layer.ffn_norm(layer.ffn_out(layer.act(layer.ffn_in(x))) + x)
    with torch.no_grad():
        assert torch.allclose(layer(q, c, m), want, atol=1e-5)


def test_hidden_context_cannot_leak_into_a_position():
    layer, q, c, m = _setup()
    with torch.no_grad():
        base = layer(q, c, m)
        for i in range(1, 9):
            hidden = (~m[0, i]).nonzero().flatten()  # includes i itself
            c2 = c.clone()
            c2[0, hidden] += 10.0
            assert torch.allclose(layer(q, c2, m)[0, i], base[0, i], atol=1e-5), i
        c3 = c.clone()
        c3[0, 0] += 1.0  # h (position 0) reaches every position
        assert not torch.allclose(layer(q, c3, m)[0, 1:], base[0, 1:], atol=1e-3)
