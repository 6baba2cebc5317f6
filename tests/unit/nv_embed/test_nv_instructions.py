"""Instruction prefixes: exact template, instruction tokens found on ids and left out of the pool mask."""

from __future__ import annotations

import pytest
import torch

from embforge.errors import ConfigError
from embforge.model.instructions import (
    instruction_pool_mask,
    instruction_prefix,
    instruction_token_counts,
)


def test_template():
    assert instruction_prefix("Retrieve passages") == "Instruct: Retrieve passages\nQuery: "
    assert instruction_prefix(None) == "" and instruction_prefix("") == ""
    with pytest.raises(ConfigError, match="must be a string"):
        instruction_prefix(3)


def test_counts_match_prefix_tokens(minilm_tokenizer):
    tok = minilm_tokenizer
    pre = instruction_prefix("find the answer")
    texts = ["what is a cat?", "why"]
    ids = tok([pre + t for t in texts])["input_ids"]
    n_pre = len(tok(pre, add_special_tokens=False)["input_ids"])
    counts = instruction_token_counts(tok, pre, ids, start=1)
    assert counts == [n_pre, n_pre]
    # the pooled tokens are exactly the text's tokens (+ the tokenizer's specials)
    for row, c in zip(ids, counts):
        content = row[1 + c : -1]
        assert tok.decode(content) in texts
    assert instruction_token_counts(tok, "", ids, start=1) == [0, 0]


def test_pool_mask_rows():
    am = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    pm = instruction_pool_mask(am, [2, 3], start=1)
    assert pm.tolist() == [[1, 0, 0, 1, 0], [1, 0, 0, 0, 1]]
    assert am.tolist()[0] == [1, 1, 1, 1, 0]  # input untouched


def test_pool_mask_left_padding():
    am = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    assert instruction_pool_mask(am, [2, 2], start=1).tolist() == [[0, 0, 1, 0, 0, 1], [1, 0, 0, 1, 1, 1]]
