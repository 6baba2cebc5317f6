"""Dense and lexical scores, the BGE-M3 hybrid, and per-head scores of encoded ``Embeddings``.

The three BGE-M3 heads (Chen et al., 2024, "BGE M3-Embedding: Multi-Lingual,
Multi-Functionality, Multi-Granularity Text Embeddings Through Self-Knowledge
Distillation") score a query q against a passage p as:

* dense: ``s_dense = <e_q, e_p>``;
* lexical: ``s_lex = sum_{t in q and p} w_qt * w_pt`` (a term's weight is the max over
  its occurrences);
* multi-vector: MaxSim, see :mod:`embforge.scoring.maxsim`;

and rank by ``w1*s_dense + w2*s_lex + w3*s_mul`` (:data:`DEFAULT_WEIGHTS`).
The torch forms are differentiable (training); the numpy forms score encoded
``Embeddings`` (evaluation, indexes, mining, serving).

Shapes: Q queries, N documents, D dense dim, T tokens, M multi-vector dim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from embforge.scoring.fusion import DEFAULT_WEIGHTS, weighted_parts
from embforge.scoring.maxsim import multivector_list_scores
from embforge.types import Embeddings, SparseVectors

__all__ = [
    "dense_scores",
    "term_weights",
    "lexical_scores",
    "sparse_vector_scores",
    "hybrid_scores",
    "embedding_scores",
    "EMBEDDING_SCORES",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def dense_scores(q: ArrayT, d: ArrayT) -> ArrayT:
    """Inner products ``s_dense = <e_q, e_p>``: q (Q, D), d (N, D) -> (Q, N), torch or numpy.

    Example:
        >>> dense_scores(torch.eye(2), torch.tensor([[1.0, 0.0]]))
        tensor([[1.],
                [0.]])
        >>> dense_scores(np.eye(2), np.array([[1.0, 0.0]])).tolist()
        [[1.0], [0.0]]
    """
    return q @ d.T


def term_weights(weights: torch.Tensor, ids: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """Per-token weights (B, T) + ids (B, T) -> term vectors (B, len(vocab)) with the MAX weight per term.

    ``vocab`` is a sorted 1-D tensor of the term ids to keep as columns (ids outside it are dropped).
    """
    col = torch.searchsorted(vocab, ids).clamp(max=len(vocab) - 1)  # (B, T)
    hit = vocab[col] == ids
    w = torch.where(hit, weights, torch.zeros_like(weights))
    out = torch.zeros(ids.shape[0], len(vocab), dtype=weights.dtype, device=weights.device)
    return out.scatter_reduce(1, col, w, reduce="amax", include_self=True)


def lexical_scores(
    q_weights: torch.Tensor, q_ids: torch.Tensor, d_weights: torch.Tensor, d_ids: torch.Tensor
) -> torch.Tensor:
    """Lexical matching ``s_lex`` from per-token weights and ids (torch, differentiable).

    Args:
        q_weights: (Q, Tq) per-token weights (0 for special/padding tokens), q_ids: (Q, Tq).
        d_weights: (N, Td), d_ids: (N, Td).

    Returns:
        (Q, N) scores. Works on a compact vocabulary (the ids present), never (B, V).

    Example:
        >>> w = torch.tensor([[0.5, 0.2, 0.4]]); ids = torch.tensor([[7, 8, 7]])
        >>> lexical_scores(w, ids, torch.tensor([[2.0]]), torch.tensor([[7]]))
        tensor([[1.]])
    """
    vocab = torch.unique(torch.cat([q_ids.flatten(), d_ids.flatten()]))  # sorted
    return term_weights(q_weights, q_ids, vocab) @ term_weights(d_weights, d_ids, vocab).transpose(0, 1)


def sparse_vector_scores(q: SparseVectors, d: SparseVectors) -> np.ndarray:
    """Lexical matching ``s_lex`` between encoded ``SparseVectors`` (CSR, numpy): (Q, N) float32."""
    return np.asarray((q.to_scipy() @ d.to_scipy().T).todense(), dtype=np.float32)


def hybrid_scores(
    dense: Any = None,
    lexical: Any = None,
    multivector: Any = None,
    weights: Mapping[str, float] | Sequence[float] = DEFAULT_WEIGHTS,
    normalize: bool = False,
) -> Any:
    """Weighted sum ``w1*s_dense + w2*s_lex + w3*s_mul`` of score arrays (torch or numpy, same shape).

    Missing heads (None) are skipped. ``weights`` is a head -> weight mapping or a
    (w_dense, w_sparse, w_multivector) triple. ``normalize=True`` divides by the sum of
    the used weights (FlagEmbedding's ``compute_score`` convention).

    Example:
        >>> hybrid_scores(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]))
        tensor([4.6000])
    """
    if not isinstance(weights, Mapping):
        weights = dict(zip(("dense", "sparse", "multivector"), weights))
    parts = {
        h: s
        for h, s in (("dense", dense), ("sparse", lexical), ("multivector", multivector))
        if s is not None
    }
    if not parts:
        raise ValueError("hybrid_scores needs at least one of dense, lexical, multivector")
    total = weighted_parts(parts, weights)
    if normalize:
        total = total / sum(float(weights.get(h, 0.0)) for h in parts)
    return total


def _missing(head: str) -> ValueError:
    return ValueError(
        f"scoring the {head!r} head needs {head} embeddings for queries and documents; "
        f"encode both with heads including {head!r}"
    )


def _dense(q: Embeddings, d: Embeddings) -> np.ndarray:
    if q.dense is None or d.dense is None:
        raise _missing("dense")
    return dense_scores(q.dense, d.dense)


def _sparse(q: Embeddings, d: Embeddings) -> np.ndarray:
    if q.sparse is None or d.sparse is None:
        raise _missing("sparse")
    return sparse_vector_scores(q.sparse, d.sparse)


def _multivector(q: Embeddings, d: Embeddings) -> np.ndarray:
    if q.multivector is None or d.multivector is None:
        raise _missing("multivector")
    return multivector_list_scores(q.multivector, d.multivector)


#: Built-in head name -> numpy scorer of two ``Embeddings`` (Q, N); head plugins add their own.
EMBEDDING_SCORES = {"dense": _dense, "sparse": _sparse, "multivector": _multivector}


def embedding_scores(q: Embeddings, d: Embeddings, head: str) -> np.ndarray:
    """Exact (Q, N) scores of one built-in head between encoded queries and documents (numpy).

    Example:
        >>> q = Embeddings(dense=np.eye(2, dtype=np.float32))
        >>> embedding_scores(q, q, "dense").tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    try:
        fn = EMBEDDING_SCORES[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; choose from: {', '.join(EMBEDDING_SCORES)}") from None
    return fn(q, d)
