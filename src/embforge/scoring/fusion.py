"""Fusion of per-head scores into one ranking score.

Every fusion takes ``head_scores``: head -> (C,) scores of the same C candidates of
one query (nan = the head has no score for that candidate) and per-head weights, and
returns (C,) fused scores (higher is better). Each also takes (Q, C) arrays, one row per
query, and fuses every row at once (no Python loop over queries or hits). They are registered by name in
:data:`FUSIONS`; the hybrid index, the search CLI and evaluation pick them from there.

* ``"weighted"``: ``sum_h w_h * s_h``, BGE-M3's ``w1*s_dense + w2*s_lex + w3*s_mul``
  (Chen et al., 2024, "BGE M3-Embedding") with :data:`DEFAULT_WEIGHTS`.
* ``"minmax"`` / ``"zscore"``: the same weighted sum of per-query normalised scores
  (min-max to [0, 1], or standard scores), so heads on different scales mix fairly, as
  in convex-combination hybrid search (Bruch et al., 2023, "An Analysis of Fusion
  Functions for Hybrid Retrieval").
* ``"rrf"``: reciprocal rank fusion ``sum_h w_h / (k + rank_h)`` with k = 60
  (Cormack et al., 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual
  Rank Learning Methods").
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from functools import reduce
from types import MappingProxyType
from typing import Any

import numpy as np

from embforge.registry import Registry

__all__ = [
    "DEFAULT_WEIGHTS",
    "M3_SCORE_WEIGHTS",
    "FUSIONS",
    "RRF_K",
    "weighted_sum",
    "minmax_fusion",
    "zscore_fusion",
    "rrf",
    "ranks",
    "minmax_normalize",
    "zscore_normalize",
    "weighted_parts",
    "fuse_rows_by_weights",
]

#: BGE-M3's hybrid weights w1*s_dense + w2*s_lex + w3*s_mul (Chen et al., 2024): the one definition.
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({"dense": 1.0, "sparse": 0.3, "multivector": 1.0})
#: the same weights as a (w1, w2, w3) tuple in the paper's order (dense, sparse, multi-vector), for the M3 loss.
M3_SCORE_WEIGHTS: tuple[float, float, float] = (
    DEFAULT_WEIGHTS["dense"],
    DEFAULT_WEIGHTS["sparse"],
    DEFAULT_WEIGHTS["multivector"],
)

#: The RRF constant of Cormack et al. (2009).
RRF_K = 60

FUSIONS: Registry = Registry("fusion")


def weighted_parts(parts: Mapping[str, Any], weights: Mapping[str, float]) -> Any:
    """``sum_h w_h * s_h`` over the given score arrays (torch or numpy, any shape); heads
    without a weight count 0. The one weighted sum: every fusion ends here.

    Example:
        >>> weighted_parts({"dense": np.array([1.0]), "sparse": np.array([2.0])}, DEFAULT_WEIGHTS)
        array([1.6])
    """
    return sum(s * float(weights.get(h, 0.0)) for h, s in parts.items())


def _as_f64(s: Any) -> np.ndarray:
    return np.asarray(s, np.float64)


@FUSIONS.register("weighted")
def weighted_sum(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], **_: object
) -> np.ndarray:
    """``sum_h w_h * s_h`` (a missing score counts as 0).

    Example:
        >>> weighted_sum({"dense": np.array([0.5, 0.2]), "sparse": np.array([1.0, 0.0])},
        ...              {"dense": 1.0, "sparse": 0.3}).round(2).tolist()
        [0.8, 0.2]
    """
    if not head_scores:
        return np.zeros(0)
    return weighted_parts({h: np.nan_to_num(_as_f64(s), nan=0.0) for h, s in head_scores.items()}, weights)


def _finite_stats(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finite mask, whether each row along the last axis has a finite entry, keepdims)."""
    ok = np.isfinite(s)
    return ok, ok.any(axis=-1, keepdims=True)


def minmax_normalize(s: np.ndarray) -> np.ndarray:
    """Min-max scale one query's (C,) scores to [0, 1] over its finite entries (nan stays nan;
    all equal -> 0). A (Q, C) array is scaled row by row.

    Example:
        >>> minmax_normalize(np.array([1.0, 3.0, np.nan, 2.0])).tolist()[:2]
        [0.0, 1.0]
    """
    s = _as_f64(s)
    ok, any_ok = _finite_stats(s)
    lo = np.where(ok, s, np.inf).min(axis=-1, keepdims=True, initial=np.inf)
    hi = np.where(ok, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    span = np.where(any_ok & (hi > lo), hi - lo, 1.0)
    scaled = np.where(any_ok & (hi > lo), (s - np.where(any_ok, lo, 0.0)) / span, np.where(ok, 0.0, s))
    return np.where(any_ok, scaled, s)


def zscore_normalize(s: np.ndarray) -> np.ndarray:
    """Standard scores ``(s - mean) / std`` of one query's (C,) finite scores (nan stays nan;
    std 0 -> 0). A (Q, C) array is standardised row by row.

    Example:
        >>> zscore_normalize(np.array([1.0, 3.0])).tolist()
        [-1.0, 1.0]
    """
    s = _as_f64(s)
    ok, any_ok = _finite_stats(s)
    n = np.maximum(ok.sum(axis=-1, keepdims=True), 1)
    mu = np.where(ok, s, 0.0).sum(axis=-1, keepdims=True) / n
    sd = np.sqrt((np.where(ok, s - mu, 0.0) ** 2).sum(axis=-1, keepdims=True) / n)
    scaled = np.where(sd > 0, (s - mu) / np.where(sd > 0, sd, 1.0), np.where(ok, 0.0, s))
    return np.where(any_ok, scaled, s)


@FUSIONS.register("minmax")
def minmax_fusion(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], **_: object
) -> np.ndarray:
    """Weighted sum of per-query min-max normalised scores (missing -> 0).

    Example:
        >>> minmax_fusion({"dense": np.array([0.2, 0.4]), "sparse": np.array([9.0, 3.0])},
        ...               {"dense": 1.0, "sparse": 1.0}).tolist()
        [1.0, 1.0]
    """
    return weighted_sum({h: minmax_normalize(s) for h, s in head_scores.items()}, weights)


@FUSIONS.register("zscore")
def zscore_fusion(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], **_: object
) -> np.ndarray:
    """Weighted sum of per-query z-scored scores (missing -> 0)."""
    return weighted_sum({h: zscore_normalize(s) for h, s in head_scores.items()}, weights)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based competition rank by descending score: tied candidates share the best rank
    ("1224"), so the result does not depend on candidate order; nan ranks last. A (Q, C)
    array is ranked row by row.

    Example:
        >>> ranks(np.array([0.1, 0.9, 0.9, np.nan])).tolist()
        [3, 1, 1, 4]
    """
    s = np.nan_to_num(_as_f64(scores), nan=-np.inf)
    order = np.argsort(-s, axis=-1, kind="stable")
    sorted_s = np.take_along_axis(s, order, axis=-1)
    first = np.concatenate(
        [np.ones(s.shape[:-1] + (min(1, s.shape[-1]),), bool), sorted_s[..., 1:] != sorted_s[..., :-1]],
        axis=-1,
    )
    pos = np.broadcast_to(np.arange(1, s.shape[-1] + 1), s.shape)
    rank_sorted = np.maximum.accumulate(np.where(first, pos, 0), axis=-1)
    r = np.empty(s.shape, np.int64)
    np.put_along_axis(r, order, rank_sorted, axis=-1)
    return r


@FUSIONS.register("rrf")
def rrf(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], rrf_k: int = RRF_K, **_: object
) -> np.ndarray:
    """Reciprocal rank fusion: ``sum_h w_h / (rrf_k + rank_h)`` (a missing score counts 0).

    Example:
        >>> rrf({"dense": np.array([0.9, 0.1]), "sparse": np.array([0.0, 2.0])},
        ...     {"dense": 1.0, "sparse": 1.0}, rrf_k=60).round(4).tolist()
        [0.0325, 0.0325]
    """
    if not head_scores:
        return np.zeros(0)
    # w_h / (k + rank) rather than w_h * (1 / (k + rank)): the same floats as before the refactor
    parts = [
        np.where(np.isnan(_as_f64(s)), 0.0, float(weights.get(h, 0.0)) / (rrf_k + ranks(s)))
        for h, s in head_scores.items()
    ]
    return reduce(operator.add, parts)


def fuse_rows_by_weights(
    head_scores: Mapping[str, Any],
    fusion: str,
    row_weights: Any,
    rrf_k: int = RRF_K,
) -> np.ndarray:
    """(Q, C) fused scores where query row ``i`` has its own weights ``row_weights[i]`` (a list of Q
    head -> weight mappings, e.g. from ``ModelFusion.query_weights``): rows that share weights are
    fused by one :data:`FUSIONS` call, so each row gets exactly the scores its weights give alone.

    Example:
        >>> s = {"dense": np.array([[0.9, 0.1], [0.9, 0.1]]), "sparse": np.array([[0.0, 2.0], [0.0, 2.0]])}
        >>> fuse_rows_by_weights(s, "weighted", [{"dense": 1.0, "sparse": 0.0}, {"dense": 0.0, "sparse": 1.0}]).tolist()
        [[0.9, 0.1], [0.0, 2.0]]
    """
    arrays = {h: np.asarray(s, np.float64) for h, s in head_scores.items()}
    keys = [tuple(sorted((h, float(v)) for h, v in w.items())) for w in row_weights]
    nq = len(keys)
    if any(a.shape[0] != nq for a in arrays.values()):
        raise ValueError(f"{nq} per-query weights for scores of {[a.shape[0] for a in arrays.values()]} queries")
    out: np.ndarray | None = None
    for key in dict.fromkeys(keys):
        rows = np.array([i for i, k in enumerate(keys) if k == key])
        part = np.asarray(FUSIONS.get(fusion)({h: a[rows] for h, a in arrays.items()}, dict(key), rrf_k=rrf_k))
        if out is None:
            out = np.empty((nq, *part.shape[1:]), np.float64)
        out[rows] = part
    return out if out is not None else np.zeros((0,))
