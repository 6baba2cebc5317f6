"""Huge records: text is cut to max_length * CHARS_PER_TOKEN characters before tokenization,
so memory stays bounded, the result equals HF truncation, and the cut is reported."""

from __future__ import annotations

import pytest

from embforge.text import tokenize_texts
from embforge.text.tokenize import CHARS_PER_TOKEN, cap_chars


class _Recorder:
    """Wraps a tokenizer and records the longest text it was asked to tokenize."""

    def __init__(self, tok) -> None:
        self.tok, self.longest = tok, 0

    def __call__(self, texts, **kw):
        if isinstance(texts, list):
            self.longest = max([self.longest, *map(len, texts)])
        return self.tok(texts, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)


@pytest.mark.parametrize("side", ["right", "left"])
def test_hostile_huge_record_is_capped_before_tokenization(tiny_m3, side) -> None:
    tok = tiny_m3.tokenizer
    old = tok.truncation_side
    tok.truncation_side = side
    try:
        huge = "word " * 40_000 + "tail"  # 200 kB, 100x the cap
        rec = _Recorder(tok)
        out = tokenize_texts(rec, ["short one", huge], max_length=32)
        assert rec.longest <= 32 * CHARS_PER_TOKEN
        assert out.truncated == [1]
        ref = tok([huge], truncation=True, max_length=32)["input_ids"][0]
        assert out.ids[1] == ref
    finally:
        tok.truncation_side = old


def test_malformed_unbroken_string_is_capped_and_reported() -> None:
    texts, capped = cap_chars(["a" * 10_000_000, "ok"], max_length=8)
    assert capped == {0} and len(texts[0]) == 8 * CHARS_PER_TOKEN and texts[1] == "ok"
    left, _ = cap_chars(["x" * 1000 + "END"], max_length=1, left=True)
    assert left[0].endswith("END") and len(left[0]) == CHARS_PER_TOKEN
