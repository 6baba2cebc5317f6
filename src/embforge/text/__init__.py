"""Text side of the encoder: input checks, tokenization with truncation/MCLS, collation, length batching."""

from embforge.text.batching import collate, token_budget_batches
from embforge.text.inputs import check_texts
from embforge.text.tokenize import (
    SpecialLayout,
    TokenizedTexts,
    frame_token_ids,
    tokenize_texts,
    warn_truncated,
)

__all__ = [
    "SpecialLayout",
    "TokenizedTexts",
    "check_texts",
    "collate",
    "frame_token_ids",
    "token_budget_batches",
    "tokenize_texts",
    "warn_truncated",
]
