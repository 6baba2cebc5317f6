"""``SpecialLayout.of`` probes a tokenizer once per tokenizer object (it ran two probe tokenizations
on every encode call), and forgets it with the tokenizer."""

from __future__ import annotations

import gc

from embforge.text.tokenize import _LAYOUTS, SpecialLayout


class _Tok:
    """A tokenizer with [CLS] text [SEP] around the words, counting its calls."""

    def __init__(self, prefix: int = 1) -> None:
        self.calls = 0
        self.prefix = prefix

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        self.calls += 1
        ids = [len(w) + 10 for w in text.split()]
        return {"input_ids": ([101] * self.prefix + ids + [102]) if add_special_tokens else ids}


def test_probed_once_per_tokenizer_and_dropped_with_it():
    a, b = _Tok(), _Tok(prefix=2)
    assert SpecialLayout.of(a) == SpecialLayout(1, 1)
    assert SpecialLayout.of(a) == SpecialLayout(1, 1)
    assert a.calls == 2  # one probe: with and without special tokens
    assert SpecialLayout.of(b) == SpecialLayout(2, 1) and b.calls == 2
    key = id(a)
    del a
    gc.collect()
    assert key not in _LAYOUTS
