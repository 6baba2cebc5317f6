"""Fused rankings over candidate documents, as the hybrid index ranks them.

One path for every evaluation mode: candidates are a (Q, C) array of corpus positions
(-1 = padding) with each head's exact scores on them (nan at padding); ``fuse_rows`` fuses
them with a rule of ``embforge.scoring.FUSIONS`` (weighted sum, min-max / z-score normalised
sums over the candidates, RRF) and ``top_rows`` keeps the best ``k``. The candidates come
from the hybrid index in ``embforge eval --rerank-top`` (``HybridIndex.candidate_rows``) or,
in exact evaluation and ``embforge tune-fusion``, from ``candidate_matrix``: the union of
the top-``candidates`` documents of the retrieving heads (dense and sparse; multi-vector
only re-ranks), as ``embforge.index.HybridIndex`` does (BGE-M3, Chen et al., 2024).

``HYBRID_BM25`` is the option "BM25 as a fourth fused score": z-scores of the three heads
(1, 0.3, 1) plus 0.3 z(BM25) on the model's tokenizer, the best mean rule of the issue-13
fusion study (docs/quality.md); eval reports it as the ``hybrid+bm25`` row when asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K, fuse_rows_by_weights

__all__ = [
    "HYBRID_BM25",
    "HYBRID_BM25_FUSION",
    "RETRIEVE",
    "candidate_matrix",
    "candidate_sets",
    "fuse_rows",
    "fused_run",
    "gather",
    "top_rows",
]

#: Heads whose top documents are the candidates (as ``HybridIndex``'s default ``retrieve``).
RETRIEVE = ("dense", "sparse")

#: ``hybrid+bm25``: the fusion rule and weights with BM25 as a fourth score.
HYBRID_BM25_FUSION = "zscore"
HYBRID_BM25: Mapping[str, float] = MappingProxyType({**DEFAULT_WEIGHTS, "bm25": 0.3})


def candidate_sets(mats: Mapping[str, np.ndarray], candidates: int) -> list[np.ndarray]:
    """Per query: the sorted union of the top-``candidates`` columns of the retrieving heads."""
    sources = [h for h in RETRIEVE if h in mats] or [next(iter(mats))]
    nq, nd = next(iter(mats.values())).shape
    n = min(candidates, nd)
    tops = [np.argpartition(-np.nan_to_num(mats[h], nan=-np.inf), n - 1, axis=1)[:, :n] for h in sources]
    return [np.unique(np.concatenate([t[i] for t in tops])) for i in range(nq)]


def candidate_matrix(mats: Mapping[str, np.ndarray], candidates: int) -> np.ndarray:
    """``candidate_sets`` as one (Q, C) int64 array of corpus positions, -1 padded.

    Example:
        >>> candidate_matrix({"dense": np.array([[3.0, 2.0, 1.0]])}, 2).tolist()
        [[0, 1]]
    """
    sets = candidate_sets(mats, candidates)
    width = max((len(s) for s in sets), default=0)
    out = np.full((len(sets), width), -1, np.int64)
    for i, s in enumerate(sets):
        out[i, : len(s)] = s
    return out


def gather(mats: Mapping[str, np.ndarray], pos: np.ndarray) -> dict[str, np.ndarray]:
    """head -> (Q, C) scores of the candidate positions ``pos`` (nan where ``pos`` is -1)."""
    ok = pos >= 0
    return {
        h: np.where(ok, np.take_along_axis(np.asarray(m), np.maximum(pos, 0), 1), np.nan)
        for h, m in mats.items()
    }


def fuse_rows(
    scores: Mapping[str, np.ndarray],
    pos: np.ndarray,
    fusion: str,
    weights: Mapping[str, float],
    rrf_k: int = RRF_K,
    row_weights: Sequence[Mapping[str, float]] | None = None,
) -> np.ndarray:
    """(Q, C) fused scores of the candidates (``-inf`` at padding), one fusion call for all rows
    (one per distinct weights when ``row_weights`` gives each query its own, e.g. a coverage split)."""
    if row_weights is not None:
        fused = fuse_rows_by_weights(dict(scores), fusion, row_weights, rrf_k)
    else:
        fused = np.asarray(FUSIONS.get(fusion)(dict(scores), weights, rrf_k=rrf_k), np.float64)
    return np.where(pos >= 0, fused, -np.inf)


def top_rows(scores: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of each row: (scores (Q, k'), corpus positions (Q, k')), padding last (-inf)."""
    s = np.where(pos >= 0, np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf), -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(s, order, 1).astype(np.float32)
    return top, np.maximum(np.take_along_axis(pos, order, 1), 0)


def fused_run(
    mats: Mapping[str, np.ndarray],
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    fusion: str,
    weights: Mapping[str, float],
    k: int,
    candidates: int = 100,
    rrf_k: int = RRF_K,
    cand: np.ndarray | None = None,
    row_weights: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """``{query id: {doc id: fused score}}`` (top ``k``) from head -> (Q, D) score matrices.

    Example:
        >>> mats = {"dense": np.array([[0.9, 0.1, 0.5]]), "sparse": np.array([[0.0, 3.0, 1.0]])}
        >>> list(fused_run(mats, ["q"], ["a", "b", "c"], "weighted", {"dense": 1, "sparse": 0.3}, k=2)["q"])
        ['b', 'a']
    """
    pos = candidate_matrix(mats, candidates) if cand is None else cand
    fused = fuse_rows(gather(mats, pos), pos, fusion, weights, rrf_k, row_weights)
    top, rows = top_rows(fused, pos, k)
    return {
        qid: {doc_ids[j]: float(v) for j, v in zip(rows[i], top[i]) if np.isfinite(v)}
        for i, qid in enumerate(query_ids)
    }
