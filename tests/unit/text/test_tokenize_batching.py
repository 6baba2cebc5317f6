from __future__ import annotations

import numpy as np
import pytest

from embforge.text import check_texts, collate, token_budget_batches, tokenize_texts

TEXTS = [
    "short",
    "a somewhat longer sentence with several words in it",
    "재판부는 검찰의 공소사실을 모두 유죄로 인정했다",
]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length", [4, 7, 64])
def test_truncation_equals_hf_truncation(tiny_m3, side, max_length):
    tok = tiny_m3.tokenizer
    old = tok.truncation_side
    tok.truncation_side = side
    try:
        ours = tokenize_texts(tok, TEXTS, max_length)
        ref = tok(TEXTS, truncation=True, max_length=max_length)["input_ids"]
    finally:
        tok.truncation_side = old
    assert ours.ids == ref
    full = [len(x) for x in tok(TEXTS)["input_ids"]]
    assert ours.truncated == [i for i, n in enumerate(full) if n > max_length]


def test_mcls_layout(tiny_m3):
    tok = tiny_m3.tokenizer
    text = " ".join(["검찰의 공소사실을"] * 80)
    out = tokenize_texts(tok, [text], 300, mcls_stride=10)
    ids, pos = out.ids[0], out.cls_positions[0]
    assert pos == list(range(0, len(ids) - 1, 10))[: len(pos)] and pos[0] == 0
    assert all(ids[p] == tok.cls_token_id for p in pos)
    assert ids[-1] == tok.eos_token_id and len(ids) <= 300 and out.truncated == [0]


def test_token_budget_batches_cover_all_and_respect_budget():
    lengths = np.array([5, 50, 7, 7, 300, 1, 20])
    batches = token_budget_batches(lengths, max_tokens=60, max_batch=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * lengths[b].max() <= 60)
    assert batches[0].tolist() == [4]  # longest first, alone (over budget)


def test_collate_pads_and_masks():
    b = collate([[5, 6, 7], [8]], pad_id=1)
    assert b.input_ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert b.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    left = collate([[5, 6, 7], [8]], pad_id=1, padding_side="left")
    assert left.input_ids.tolist() == [[5, 6, 7], [1, 1, 8]]


def test_check_texts_accepts_strings_and_iterables():
    assert check_texts("x") == ["x"]
    assert check_texts(t for t in ["a", "b"]) == ["a", "b"]
