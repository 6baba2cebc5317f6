"""Position extension keeps short-input outputs bit-identical and fills new rows sensibly."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel

from embforge.errors import ConfigError
from embforge.pretrain.positions import extend_positions


def _xlmr(P=34):
    torch.manual_seed(0)
    cfg = XLMRobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=P,
        pad_token_id=1,
    )
    return XLMRobertaModel(cfg, add_pooling_layer=False).eval()


def _ids(B, T, seed=0):
    ids = torch.randint(5, 100, (B, T), generator=torch.Generator().manual_seed(seed))
    ids[:, 0], ids[:, -1] = 0, 2
    attn = torch.ones_like(ids)
    ids[1, T // 2 :], attn[1, T // 2 :] = 1, 0  # a padded row
    return ids, attn


@pytest.mark.parametrize("init", ["copy", "random"])
def test_xlmr_short_inputs_unchanged_long_inputs_work(init):
    model = _xlmr(34)  # 32 tokens: positions 2..33 (padding_idx 1 offset)
    ids, attn = _ids(2, 32)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=attn).last_hidden_state
    extend_positions(model, 8 * 32 + 2, init=init)
    assert model.config.max_position_embeddings == 258
    assert model.embeddings.position_embeddings.weight.shape == (258, 32)
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=attn).last_hidden_state
        long_ids, long_attn = _ids(2, 256)
        long_out = model(input_ids=long_ids, attention_mask=long_attn).last_hidden_state
    assert torch.equal(before, after)
    assert long_out.shape == (2, 256, 32) and torch.isfinite(long_out).all()


def test_copy_init_tiles_learned_rows_after_the_padding_offset():
    model = _xlmr(34)
    old = model.embeddings.position_embeddings.weight.detach().clone()
    extend_positions(model, 2 + 32 * 3 + 5)
    new = model.embeddings.position_embeddings.weight.detach()
    assert torch.equal(new[:34], old)
    for pos in (32, 33, 63, 64, 95, 100):  # token position -> row pos + 2
        assert torch.equal(new[pos + 2], old[pos % 32 + 2]), pos
    # rows 0 (unused) and 1 (padding) are never copied into real positions
    assert not any(torch.equal(new[r], old[1]) for r in range(34, new.shape[0]))


def test_bert_without_offset_and_masked_lm_and_tokenizer_limit():
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(
            vocab_size=50,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
    ).eval()
    ids = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        before = bert(input_ids=ids).last_hidden_state
    extend_positions(bert, 64)
    new = bert.embeddings.position_embeddings.weight
    assert torch.equal(new[16:32], new[:16]) and torch.equal(new[48:64], new[:16])
    assert bert.embeddings.position_ids.shape == (1, 64)
    with torch.no_grad():
        assert torch.equal(bert(input_ids=ids).last_hidden_state, before)
        assert bert(input_ids=torch.randint(0, 50, (1, 64))).last_hidden_state.shape == (1, 64, 16)

    lm = XLMRobertaForMaskedLM(
        XLMRobertaConfig(
            vocab_size=30,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=18,
        )
    )

    class Tok:
        model_max_length = 16

    tok = Tok()
    extend_positions(lm, 130, tokenizer=tok)
    assert lm.config.max_position_embeddings == 130 and tok.model_max_length == 128
    assert lm.roberta.embeddings.position_embeddings.weight.shape[0] == 130


def test_errors_name_value_and_fix():
    model = _xlmr(34)
    with pytest.raises(ConfigError, match=r"max_positions=20 must exceed the current 34 position rows.*514"):
        extend_positions(model, 20)
    with pytest.raises(
        ConfigError, match="unknown position initialisation 'zeros'; choose from: copy, random"
    ):
        extend_positions(model, 100, init="zeros")
