"""Bidirectional attention for decoder LLMs (NV-Embed): later tokens change earlier hidden states."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embforge.errors import ConfigError
from embforge.nv_embed.decoder import is_bidirectional, is_decoder_config, set_bidirectional

KINDS = ("llama", "mistral", "qwen2")


def _first_token_change(model, padded: bool) -> tuple[float, float]:
    """Max change of token 0's hidden state when the last real token of each row changes."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 1000, (2, 8), generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    if padded:
        mask[1, 6:] = 0
    ids2 = ids.clone()
    ids2[0, 7] += 1
    ids2[1, 5] += 1  # row 1's last real token
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).last_hidden_state
        b = model(input_ids=ids2, attention_mask=mask).last_hidden_state
    return float((a[0, 0] - b[0, 0]).abs().max()), float((a[1, 0] - b[1, 0]).abs().max())


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("padded", [False, True])
def test_bidirectional_first_token_sees_later_tokens(make_decoder, kind, attn, padded):
    model = make_decoder(kind, attn=attn)
    causal = _first_token_change(model, padded)
    assert causal == (0.0, 0.0)  # a causal decoder: token 0 never sees later tokens
    set_bidirectional(model)
    assert is_bidirectional(model)
    bi = _first_token_change(model, padded)
    assert min(bi) > 1e-4
    set_bidirectional(model, False)
    assert _first_token_change(model, padded) == (0.0, 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_stays_masked_after_bidirectional(make_decoder, kind):
    model = set_bidirectional(make_decoder(kind))
    ids = torch.randint(5, 1000, (1, 8))
    mask = torch.tensor([[1] * 6 + [0] * 2])
    ids2 = ids.clone()
    ids2[0, 6:] += 7  # change only padding
    with torch.no_grad():
        a = model(input_ids=ids, attention_mask=mask).last_hidden_state[0, :6]
        b = model(input_ids=ids2, attention_mask=mask).last_hidden_state[0, :6]
    torch.testing.assert_close(a, b)


def test_per_instance_not_global(make_decoder_config):
    """Two models sharing one config object: only the patched one turns bidirectional."""
    from transformers import AutoModel

    cfg = make_decoder_config("llama")
    torch.manual_seed(0)
    m1, m2 = AutoModel.from_config(cfg).eval(), AutoModel.from_config(cfg).eval()
    set_bidirectional(m1)
    assert is_bidirectional(m1) and not is_bidirectional(m2)
    assert getattr(cfg, "is_causal", True)  # the shared config object is untouched
    assert _first_token_change(m2, padded=False) == (0.0, 0.0)


def test_save_load_keeps_bidirectional(make_decoder, tmp_path):
    from embforge.nv_embed.decoder import load_decoder

    m = set_bidirectional(make_decoder("qwen2"))
    m.save_pretrained(tmp_path)
    back = load_decoder(str(tmp_path))
    assert is_bidirectional(back)
    ids = torch.randint(5, 1000, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(m(input_ids=ids).last_hidden_state, back(input_ids=ids).last_hidden_state)
    causal = load_decoder(str(tmp_path), bidirectional=False)
    assert not is_bidirectional(causal)


def test_non_decoder_is_refused(make_decoder_config):
    assert is_decoder_config(make_decoder_config("mistral"))
    with pytest.raises(ConfigError, match="cannot make Linear bidirectional"):
        set_bidirectional(nn.Linear(2, 2))
