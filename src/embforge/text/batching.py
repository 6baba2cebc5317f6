"""Length-sorted batching by token budget, and padding into a ``Batch``."""

from __future__ import annotations

import numpy as np
import torch

from embforge.types import Batch

__all__ = ["token_budget_batches", "collate"]


def token_budget_batches(lengths: np.ndarray, max_tokens: int, max_batch: int) -> list[np.ndarray]:
    """Group text indices, longest first, so that each padded batch holds <= ``max_tokens`` tokens.

    A batch's padded size is ``len(batch) * longest``; a single text longer than the budget
    still gets its own batch. Returns index arrays into ``lengths``.

    Example:
        >>> [b.tolist() for b in token_budget_batches(np.array([1, 5, 2, 2]), 6, 8)]
        [[1], [2, 3, 0]]
    """
    order = np.argsort(-lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_batch, max_tokens // longest))
        batches.append(order[start : start + size])
        start += size
    return batches


def collate(ids: list[list[int]], pad_id: int, padding_side: str = "right") -> Batch:
    """Pad token id lists into a ``Batch`` (input_ids, attention_mask both (B, T) int64)."""
    t = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), t), dtype=torch.long)
    for i, x in enumerate(ids):
        if padding_side == "left":
            input_ids[i, t - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[i, t - len(x) :] = 1
        else:
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
    return Batch(input_ids, mask)
