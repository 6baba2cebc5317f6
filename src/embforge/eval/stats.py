"""Paired bootstrap over queries: the resampling behind every significance statement of embforge's
evaluations (``tune-fusion``'s coverage split, bench/quality.py's per-set checks, bench/int8_confirm.py).

Two systems scored on the same queries give one difference per query; resampling the queries with
replacement (Efron and Tibshirani, 1993) gives the spread of their mean difference, and the 2.5 / 97.5
percentiles of the resampled means are its 95% interval (Sakai, 2006, for IR evaluation). With several
query sets (strata), each set is resampled on its own and the statistic is the mean over the sets.
Every function takes a ``numpy.random.Generator``, so a seed fixes the draws.

Example:
    >>> rng = np.random.default_rng(0)
    >>> lo, hi = interval(resampled_means(np.array([0.1, 0.2, 0.0, 0.3]), 2000, rng))
    >>> bool(lo < 0.15 < hi)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["resample_index", "resampled_means", "stratified_means", "interval"]


def resample_index(m: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, m) query indices: ``n`` resamples of ``m`` queries with replacement (use the same rows for
    two systems to keep them paired)."""
    return rng.integers(0, m, (n, m))


def resampled_means(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) means of ``x`` (one value per query) over ``n`` resamples of its queries."""
    return x[resample_index(len(x), n, rng)].mean(1)


def stratified_means(xs: Sequence[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) means over the sets of each set's resampled mean (each set resampled on its own; an empty
    set counts as 0 in the mean over the sets)."""
    draws = np.zeros(n)
    for x in xs:
        if len(x):
            draws += resampled_means(np.asarray(x), n, rng)
    return draws / len(xs)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of the resampled statistic (percentile bootstrap)."""
    tail = (100 - 100 * level) / 2  # 2.5 exactly for 0.95
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)
