"""Every fusion of ``scoring.FUSIONS`` on (Q, C) arrays == a per-hit Python reference, row by row.

Property tests (hypothesis) over ties (small integer scores), missing scores (nan), empty
candidate lists (C = 0) and rows without any score; fusing a row must not depend on the
order of its candidates (a permutation of the candidates permutes the fused scores).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embforge.scoring import FUSIONS, RRF_K, fuse_rows_by_weights

HEADS = ("dense", "sparse", "multivector")


def _norm_ref(xs: list[float], kind: str) -> list[float]:
    """Per-query normalisation, one hit at a time (nan stays nan; a constant row -> 0)."""
    fin = [x for x in xs if not math.isnan(x)]
    if not fin:
        return list(xs)
    if kind == "minmax":
        lo, hi = min(fin), max(fin)
        return [x if math.isnan(x) else ((x - lo) / (hi - lo) if hi > lo else 0.0) for x in xs]
    mu = sum(fin) / len(fin)
    sd = math.sqrt(sum((x - mu) ** 2 for x in fin) / len(fin))
    return [x if math.isnan(x) else ((x - mu) / sd if sd > 0 else 0.0) for x in xs]


def _rank_ref(xs: list[float]) -> list[int]:
    """1-based competition rank, descending; nan ranks after every score."""
    key = [-math.inf if math.isnan(x) else x for x in xs]
    return [1 + sum(1 for y in key if y > x) for x in key]


def reference(fusion: str, row: dict[str, list[float]], w: dict[str, float]) -> list[float]:
    """The fused score of each hit of one query, written as loops over hits."""
    c = len(next(iter(row.values())))
    out = [0.0] * c
    for h, xs in row.items():
        if fusion in ("minmax", "zscore"):
            xs = _norm_ref(xs, fusion)
        if fusion == "rrf":
            r = _rank_ref(xs)
            part = [0.0 if math.isnan(x) else w.get(h, 0.0) / (RRF_K + r[i]) for i, x in enumerate(xs)]
        else:
            part = [0.0 if math.isnan(x) else w.get(h, 0.0) * x for x in xs]
        out = [a + b for a, b in zip(out, part)]
    return out


score = st.one_of(st.integers(-3, 3).map(float), st.just(math.nan), st.floats(-5, 5, allow_nan=False))


@st.composite
def head_arrays(draw):
    q, c = draw(st.integers(1, 4)), draw(st.integers(0, 7))
    heads = draw(st.lists(st.sampled_from(HEADS), min_size=1, max_size=3, unique=True))
    return {
        h: np.array(draw(st.lists(st.lists(score, min_size=c, max_size=c), min_size=q, max_size=q))).reshape(
            q, c
        )
        for h in heads
    }


weights = st.fixed_dictionaries({h: st.sampled_from([0.0, 0.3, 1.0, 2.0]) for h in HEADS})


@settings(max_examples=150, deadline=None)
@given(arrays=head_arrays(), w=weights, fusion=st.sampled_from(sorted(FUSIONS.names())))
def test_every_fusion_on_arrays_equals_the_per_hit_reference(arrays, w, fusion):
    got = np.asarray(FUSIONS.get(fusion)(arrays, w, rrf_k=RRF_K), np.float64)
    q, c = next(iter(arrays.values())).shape
    assert got.shape == (q, c)
    for i in range(q):
        want = reference(fusion, {h: a[i].tolist() for h, a in arrays.items()}, w)
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-12)
        one_row = np.asarray(FUSIONS.get(fusion)({h: a[i] for h, a in arrays.items()}, w, rrf_k=RRF_K))
        np.testing.assert_allclose(one_row, got[i], rtol=1e-12, atol=1e-15)  # (C,) == its (Q, C) row


@settings(max_examples=80, deadline=None)
@given(
    arrays=head_arrays(), w=weights, fusion=st.sampled_from(sorted(FUSIONS.names())), seed=st.integers(0, 99)
)
def test_fusion_does_not_depend_on_candidate_order(arrays, w, fusion, seed):
    c = next(iter(arrays.values())).shape[1]
    perm = np.random.default_rng(seed).permutation(c)
    fuse = FUSIONS.get(fusion)
    a = np.asarray(fuse(arrays, w, rrf_k=RRF_K))
    b = np.asarray(fuse({h: x[:, perm] for h, x in arrays.items()}, w, rrf_k=RRF_K))
    np.testing.assert_allclose(b, a[:, perm], rtol=1e-12, atol=1e-15)


def test_empty_candidate_lists_and_rows_without_scores():
    for name in FUSIONS.names():
        fuse = FUSIONS.get(name)
        assert np.asarray(fuse({"dense": np.zeros((3, 0))}, {"dense": 1.0})).shape == (3, 0)
        nan_row = {"dense": np.full((1, 4), np.nan), "sparse": np.full((1, 4), np.nan)}
        assert np.asarray(fuse(nan_row, {"dense": 1.0, "sparse": 1.0})).tolist() == [[0.0] * 4]


@settings(max_examples=80, deadline=None)
@given(
    arrays=head_arrays(),
    row_w=st.lists(weights, min_size=4, max_size=4),
    fusion=st.sampled_from(sorted(FUSIONS.names())),
)
def test_per_query_weights_fuse_each_row_with_its_own_weights(arrays, row_w, fusion):
    """``fuse_rows_by_weights`` (a coverage split's per-query weights) == each row fused alone."""
    q = next(iter(arrays.values())).shape[0]
    got = fuse_rows_by_weights(arrays, fusion, row_w[:q], RRF_K)
    assert got.shape == next(iter(arrays.values())).shape
    for i in range(q):
        want = reference(fusion, {h: a[i].tolist() for h, a in arrays.items()}, row_w[i])
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-12)


def test_per_query_weights_must_match_the_queries():
    import pytest

    with pytest.raises(ValueError, match="2 per-query weights for scores of"):
        fuse_rows_by_weights({"dense": np.zeros((3, 2))}, "weighted", [{"dense": 1.0}] * 2)
