"""JudgedCandidates: the grid's fast nDCG@10 equals metrics.evaluate(qrels, fused_run(...)) exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embforge.eval import metrics as M
from embforge.eval.candidate_ndcg import JudgedCandidates
from embforge.eval.datasets import RetrievalSet
from embforge.eval.fusion import candidate_matrix, fused_run

HEADS = ("dense", "sparse", "multivector")
POINTS = [
    ("weighted", {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}),
    ("weighted", {"dense": 0.25, "sparse": 2.0, "multivector": 0.5}),
    ("minmax", {"dense": 1.0, "sparse": 1.0, "multivector": 4.0}),
    ("zscore", {"dense": 0.25, "sparse": 0.1, "multivector": 2.0}),
    ("rrf", {"dense": 1.0, "sparse": 0.5, "multivector": 1.0}),
]


def _case(seed: int, nq: int, nd: int, levels: int):
    """Scores rounded to ``levels`` values (ties), graded qrels, a query without judgements, a
    judged document outside the corpus and a qrels entry for a query not in the set."""
    rng = np.random.default_rng(seed)
    mats = {h: np.round(rng.normal(0, 1, (nq, nd)) * levels) / levels for h in HEADS}
    doc_ids = [f"d{j:03d}" if j % 3 else f"x{j}" for j in range(nd)]  # ids whose order is not the index order
    rng.shuffle(doc_ids)
    qids = [f"q{i}" for i in range(nq)]
    qrels = {}
    for i, q in enumerate(qids):
        if i == 0:
            continue  # no judgement: not evaluated
        picks = rng.choice(nd, size=min(nd, int(rng.integers(1, 4))), replace=False)
        qrels[q] = {doc_ids[j]: int(rng.integers(0, 3)) for j in picks}
    qrels[qids[-1]]["not-in-corpus"] = 2
    qrels["q-elsewhere"] = {doc_ids[0]: 1}  # judged, absent from the set: counts 0 in the mean
    data = RetrievalSet("t", doc_ids, doc_ids, qids, qids, qrels)
    return mats, data


def _slow(mats, data, cand, fusion, weights, row_weights=None):
    run = fused_run(
        mats, data.query_ids, data.doc_ids, fusion, weights, 10, cand=cand, row_weights=row_weights
    )
    mean = M.evaluate(data.qrels, run, (10,))["ndcg@10"]
    pq = M.per_query(data.qrels, run, (10,))
    return mean, np.array([pq.get(q, {}).get("ndcg@10", 0.0) for q in data.query_ids])


@pytest.mark.parametrize("fusion,weights", POINTS)
@pytest.mark.parametrize("levels", [1, 4, 1000])
def test_equals_the_run_path(fusion, weights, levels):
    mats, data = _case(levels, 25, 60, levels)
    cand = candidate_matrix(mats, 8)  # ragged: -1 padding on some rows
    assert (cand < 0).any()
    jc = JudgedCandidates.build(mats, data, cand)
    mean, per_q = _slow(mats, data, cand, fusion, weights)
    assert jc.mean(fusion, weights) == mean
    np.testing.assert_array_equal(jc.per_query(fusion, weights), per_q)


def test_equals_the_run_path_with_per_query_weights():
    mats, data = _case(7, 20, 40, 2)
    cand = candidate_matrix(mats, 40)
    rw = [{"dense": 1.0, "sparse": 2.0 if i % 2 else 0.1, "multivector": 1.0} for i in range(20)]
    jc = JudgedCandidates.build(mats, data, cand)
    mean, per_q = _slow(mats, data, cand, "weighted", {}, rw)
    assert jc.mean("weighted", {}, row_weights=rw) == mean
    np.testing.assert_array_equal(jc.per_query("weighted", {}, row_weights=rw), per_q)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nq=st.integers(2, 12),
    nd=st.integers(2, 30),
    levels=st.sampled_from([1, 3, 100]),
)
def test_equals_the_run_path_on_random_sets(seed, nq, nd, levels):
    mats, data = _case(seed, nq, nd, levels)
    cand = candidate_matrix(mats, max(1, nd // 3))
    jc = JudgedCandidates.build(mats, data, cand)
    for fusion, weights in POINTS:
        mean, per_q = _slow(mats, data, cand, fusion, weights)
        assert jc.mean(fusion, weights) == mean
        np.testing.assert_array_equal(jc.per_query(fusion, weights), per_q)


def test_a_set_without_judgements_scores_zero():
    mats, data = _case(1, 4, 10, 3)
    empty = RetrievalSet("e", data.doc_ids, data.doc_texts, data.query_ids, data.query_texts, {})
    jc = JudgedCandidates.build(mats, empty, candidate_matrix(mats, 5))
    assert jc.mean("weighted", {"dense": 1.0}) == 0.0
