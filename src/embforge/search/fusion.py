"""Fusion of per-head candidate scores: weighted sum (BGE-M3) and reciprocal rank fusion.

Both take ``head_scores``: head -> (C,) scores of the same C candidates (nan =
the head has no score for that candidate) and per-head weights, and return (C,)
fused scores (higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from embforge.registry import Registry

__all__ = ["FUSIONS", "DEFAULT_WEIGHTS", "RRF_K", "weighted_sum", "rrf", "ranks"]

FUSIONS: Registry = Registry("fusion")

DEFAULT_WEIGHTS: dict[str, float] = {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}
"""BGE-M3's ``s_rank = w1*s_dense + w2*s_lex + w3*s_mul`` with w = (1, 0.3, 1)."""

RRF_K = 60


@FUSIONS.register("weighted")
def weighted_sum(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], **_: object
) -> np.ndarray:
    """``sum_h w_h * s_h`` (a missing score counts as 0).

    Example:
        >>> import numpy as np
        >>> weighted_sum({"dense": np.array([0.5, 0.2]), "sparse": np.array([1.0, 0.0])},
        ...              {"dense": 1.0, "sparse": 0.3}).round(2).tolist()
        [0.8, 0.2]
    """
    out = None
    for h, s in head_scores.items():
        term = float(weights.get(h, 0.0)) * np.nan_to_num(np.asarray(s, np.float64), nan=0.0)
        out = term if out is None else out + term
    return np.zeros(0) if out is None else out


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based competition rank by descending score: tied candidates share the best rank
    ("1224"), so the result does not depend on candidate order; nan ranks last."""
    s = np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf)
    order = np.argsort(-s, kind="stable")
    sorted_s = s[order]
    first = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
    rank_sorted = np.maximum.accumulate(np.where(first, np.arange(1, len(s) + 1), 0))
    r = np.empty(len(s), np.int64)
    r[order] = rank_sorted
    return r


@FUSIONS.register("rrf")
def rrf(
    head_scores: Mapping[str, np.ndarray], weights: Mapping[str, float], rrf_k: int = RRF_K, **_: object
) -> np.ndarray:
    """Reciprocal rank fusion (Cormack et al. 2009): ``sum_h w_h / (rrf_k + rank_h)``.

    Example:
        >>> import numpy as np
        >>> rrf({"dense": np.array([0.9, 0.1]), "sparse": np.array([0.0, 2.0])},
        ...     {"dense": 1.0, "sparse": 1.0}, rrf_k=60).round(4).tolist()
        [0.0325, 0.0325]
    """
    out = None
    for h, s in head_scores.items():
        w = float(weights.get(h, 0.0))
        term = w / (rrf_k + ranks(s))
        term = np.where(np.isnan(np.asarray(s, np.float64)), 0.0, term)
        out = term if out is None else out + term
    return np.zeros(0) if out is None else out
