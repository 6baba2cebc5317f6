"""Per-head score matrices between query and document ``EmbeddingOutput`` s.

Thin adapters from ``EmbeddingOutput`` fields to the pure scoring functions of
``embforge.scoring`` (SPEC section 1): dense inner product, lexical match (max
weight per term, summed over shared terms) and MaxSim divided by the number of
query tokens.
"""

from __future__ import annotations

import torch

from embforge.scoring import dense_scores, lexical_scores, maxsim_scores
from embforge.types import EmbeddingOutput

__all__ = ["head_scores", "dense_scores", "lexical_scores", "maxsim_scores"]


def head_scores(q: EmbeddingOutput, d: EmbeddingOutput, head: str) -> torch.Tensor:
    """Score every query against every document with one head -> (Q, N)."""
    if head == "dense":
        _need(q.dense, d.dense, head)
        return dense_scores(q.dense, d.dense)
    if head == "sparse":
        _need(q.sparse, d.sparse, head)
        _need(q.input_ids, d.input_ids, "sparse (input_ids)")
        return lexical_scores(q.sparse, q.input_ids.contiguous(), d.sparse, d.input_ids.contiguous())
    if head == "multivector":
        _need(q.multivector, d.multivector, head)
        return maxsim_scores(q.multivector, q.multivector_mask, d.multivector, d.multivector_mask)
    raise ValueError(f"unknown head {head!r}; choose from: dense, multivector, sparse")


def _need(a: object, b: object, head: str) -> None:
    if a is None or b is None:
        raise ValueError(
            f"the loss needs the {head} head, but the model did not compute it; add {head!r} to model.heads"
        )
