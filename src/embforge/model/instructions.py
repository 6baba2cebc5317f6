"""NV-Embed instructions: a task description in front of queries, left out of pooling.

Queries are prefixed ``"Instruct: {task}\\nQuery: "``; documents get no
instruction (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as
Generalist Embedding Models"). The instruction tokens take part in the
decoder's self-attention but are excluded from pooling (``Batch.pool_mask``).

The prefixes are stored with the model (``EncoderConfig.query_prefix`` /
``document_prefix``) so that ``encode`` -- and thus the server -- applies them
per role without the caller repeating them.

Which tokens are "instruction tokens" is decided on token ids, without offset
mappings (so slow tokenizers work too): the leading content tokens of the
prefixed text that equal the tokens of the prefix alone. A token that merges
the end of the prefix with the start of the text (sentencepiece's ``"▁What"``
after ``"Query: "``) carries text, so it is pooled.
"""

from __future__ import annotations

import torch

from embforge.errors import ConfigError
from embforge.text.tokenize import SpecialLayout
from embforge.types import Batch

__all__ = [
    "INSTRUCTION_TEMPLATE",
    "instruction_prefix",
    "instruction_token_counts",
    "instruction_pool_mask",
    "with_instruction_pool_mask",
]

INSTRUCTION_TEMPLATE = "Instruct: {task}\nQuery: "


def instruction_prefix(task: str | None) -> str:
    """The query prefix for a task description; "" for None/"" (no instruction).

    Example:
        >>> instruction_prefix("Given a question, retrieve passages that answer it")
        'Instruct: Given a question, retrieve passages that answer it\\nQuery: '
    """
    if task is None or task == "":
        return ""
    if not isinstance(task, str):
        raise ConfigError(f"instruction task must be a string, got {type(task).__name__} {task!r}")
    return INSTRUCTION_TEMPLATE.format(task=task.strip())


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def instruction_token_counts(tokenizer, prefix: str, ids: list[list[int]], start: int = 0) -> list[int]:
    """How many tokens of each prefixed text (from position ``start``) are instruction tokens.

    Args:
        tokenizer: the HF tokenizer that made ``ids``.
        prefix: the instruction prefix that was prepended to every text ("" -> zeros).
        ids: token ids of the prefixed texts (with special tokens).
        start: position of the first content token (after e.g. BOS / [CLS]).
    """
    if not prefix:
        return [0] * len(ids)
    p = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    return [_common_prefix_len(p, x[start:]) for x in ids]


def instruction_pool_mask(attention_mask: torch.Tensor, counts: list[int], start: int = 0) -> torch.Tensor:
    """The pool mask (B, T): ``attention_mask`` with each row's instruction tokens zeroed.

    Row i's instruction occupies ``counts[i]`` tokens from ``start`` tokens after the
    row's first real token (so right and left padding both work).

    Example:
        >>> am = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
        >>> instruction_pool_mask(am, [2, 1], start=1).tolist()
        [[1, 0, 0, 1, 1], [0, 1, 0, 1, 1]]
    """
    pm = attention_mask.clone()
    first = attention_mask.argmax(dim=1).tolist()  # first real token per row
    for i, n in enumerate(counts):
        if n:
            a = first[i] + start
            pm[i, a : a + n] = 0
    return pm


def with_instruction_pool_mask(tokenizer, batch: Batch, ids: list[list[int]], prefix: str) -> Batch:
    """``batch`` (made from the prefixed ``ids``) with a pool mask that leaves out the prefix tokens.

    The tokens before the content (BOS / [CLS]) stay pooled; "" -> the batch unchanged.
    """
    if not prefix:
        return batch
    start = SpecialLayout.of(tokenizer).prefix
    counts = instruction_token_counts(tokenizer, prefix, ids, start)
    return Batch(
        batch.input_ids, batch.attention_mask, instruction_pool_mask(batch.attention_mask, counts, start)
    )
