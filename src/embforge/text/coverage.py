"""How well a model's tokenizer covers a text: characters per token.

A sub-word vocabulary trained on a language splits that language's words into pieces of several
characters; on a script it barely knows, it falls back to single characters or ``<unk>``. The
encoder's dense and multi-vector heads then see a character sequence they were never trained on
and score near chance, while the sparse head's exact token matches still work. A hybrid whose
weights suit one regime hurts the other, so ``embforge tune-fusion`` can give low-coverage queries
their own weights (``embforge.model.fusion.CoverageSplit``).

Measured with all-MiniLM-L6-v2's English WordPiece vocabulary on XQuAD questions
(bench/results/quality.md): median 1.9-4.8 characters per token on the Latin-script languages
(en de es ro tr vi), 0.0-1.1 on ar el hi ru th zh. ``LOW_COVERAGE_CHARS_PER_TOKEN`` sits between
the two; a threshold of 1.2 or 2.0 makes the same split there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["LOW_COVERAGE_CHARS_PER_TOKEN", "chars_per_token"]

#: At or below this many characters per token a query counts as poorly covered by the vocabulary.
LOW_COVERAGE_CHARS_PER_TOKEN = 1.5

_MARKERS = ("##", "\u2581", "\u0120")  # WordPiece continuation, sentencepiece / byte-level word starts


def chars_per_token(texts: Iterable[str], tokenizer: Any) -> np.ndarray:
    """(N,) float: characters of each text that its tokens spell, ``<unk>`` excluded, per token
    (0 for a text without tokens). Uses a fast tokenizer's offsets; a slow one's token strings.

    Example:
        >>> from embforge.model.builders import bundled_model_path
        >>> from transformers import AutoTokenizer
        >>> tok = AutoTokenizer.from_pretrained(bundled_model_path())
        >>> [round(float(x), 1) for x in chars_per_token(["where is the station", "\u0645\u062d\u0637\u0629"], tok)]
        [4.2, 1.0]
    """
    texts = list(texts)
    if not texts:
        return np.zeros(0)
    unk = getattr(tokenizer, "unk_token_id", None)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        out = []
        for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"]):
            chars = sum(e - s for i, (s, e) in zip(ids, offsets) if i != unk)
            out.append(chars / len(ids) if ids else 0.0)
        return np.asarray(out, np.float64)
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        chars = sum(len(_strip(p)) for i, p in zip(ids, pieces) if i != unk)
        out.append(chars / len(ids) if ids else 0.0)
    return np.asarray(out, np.float64)


def _strip(piece: str) -> str:
    for m in _MARKERS:
        if piece.startswith(m):
            return piece[len(m) :]
    return piece
