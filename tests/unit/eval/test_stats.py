"""embforge.eval.stats: the paired bootstrap over queries (seeded draws, percentile interval, strata)."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.eval.stats import interval, resample_index, resampled_means, stratified_means


def test_resampled_means_are_means_of_resampled_queries():
    x = np.array([0.0, 1.0, 2.0, 3.0, 10.0])
    idx = resample_index(len(x), 7, np.random.default_rng(3))
    assert idx.shape == (7, 5) and idx.min() >= 0 and idx.max() <= 4
    draws = resampled_means(x, 7, np.random.default_rng(3))
    np.testing.assert_allclose(draws, x[idx].mean(1))  # same seed, same draws


def test_interval_covers_a_known_mean_and_shrinks_with_more_queries():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.2, 1.0, 50), rng.normal(0.2, 1.0, 5000)
    lo_s, hi_s = interval(resampled_means(small, 4000, np.random.default_rng(1)))
    lo_l, hi_l = interval(resampled_means(large, 4000, np.random.default_rng(1)))
    assert lo_l < 0.2 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5  # 100x the queries: about 1/10 of the width
    # the standard error of a mean of n draws of sd 1: the 95% interval is about +-1.96 / sqrt(n)
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 / np.sqrt(5000), rel=0.1)


def test_interval_is_the_percentiles():
    draws = np.arange(1001, dtype=float)
    assert interval(draws) == (25.0, 975.0)
    assert interval(draws, level=0.5) == (250.0, 750.0)


def test_stratified_means_resample_each_set_and_count_empty_sets():
    a, b = np.array([1.0, 1.0, 1.0]), np.array([0.0, 2.0])
    draws = stratified_means([a, b, np.array([])], 500, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    expected = (resampled_means(a, 500, rng) + resampled_means(b, 500, rng)) / 3
    np.testing.assert_allclose(draws, expected)
    assert set(np.round(draws * 3, 6)) <= {1.0, 2.0, 3.0}  # a always 1; b's mean 0, 1 or 2
