"""tune_fusion: grid over rules x weights, keeps the paper's weighted (1, 0.3, 1) within the margin."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import ConfigError
from embforge.eval.datasets import RetrievalSet
from embforge.eval.fusion import candidate_sets, fused_run
from embforge.eval.tune import GRID, grid_points, tune_fusion, tune_fusion_sets
from embforge.model.fusion import ModelFusion


def _set(nq: int, nd: int) -> RetrievalSet:
    qids, dids = [f"q{i}" for i in range(nq)], [f"d{j}" for j in range(nd)]
    return RetrievalSet(
        name="dev",
        query_ids=qids,
        query_texts=qids,
        doc_ids=dids,
        doc_texts=dids,
        qrels={q: {f"d{i}": 1} for i, q in enumerate(qids)},
    )


def _mats(nq: int, nd: int, informative: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores where only ``informative`` ranks query i's document i first; the others are noise."""
    rng = np.random.default_rng(seed)
    mats = {h: rng.normal(0, 1, (nq, nd)) for h in ("dense", "sparse", "multivector")}
    mats[informative][np.arange(nq), np.arange(nq)] += 4.0
    return mats


def test_grid_is_small_and_documented():
    pts = grid_points(["dense", "sparse", "multivector"])
    assert len(pts) == len(GRID["fusion"]) * len(GRID["dense"]) * len(GRID["sparse"]) * len(GRID["multivector"]) == 160
    assert {p.weights["dense"] for p in pts} == set(GRID["dense"])
    assert len(grid_points(["dense", "sparse"])) == 4 * 2 * 5  # no multi-vector axis without the head


def test_keeps_the_paper_default_within_the_margin():
    data = _set(30, 60)
    res = tune_fusion(_mats(30, 60, "multivector"), data, margin=1.0)
    assert res.chosen.fusion == "weighted" and dict(res.chosen.weights) == {
        "dense": 1.0,
        "sparse": 0.3,
        "multivector": 1.0,
    }
    assert res.chosen.tuned["decision"].startswith("kept the paper's")
    assert res.chosen.tuned["paper_default_ndcg@10"] == pytest.approx(res.default_ndcg, abs=1e-5)


def test_picks_a_better_point_above_the_margin():
    data = _set(30, 60)
    mats = _mats(30, 60, "sparse")
    res = tune_fusion(mats, data, margin=0.01)
    assert res.best["ndcg@10"] > res.default_ndcg + 0.01
    assert res.chosen.fusion == res.best["fusion"] and res.chosen.weights["sparse"] == max(GRID["sparse"])

    def top1(fusion, weights):
        run = fused_run(mats, data.query_ids, data.doc_ids, fusion, weights, 10)
        return sum(next(iter(r)) == f"d{i}" for i, r in enumerate(run.values()))

    assert top1(res.chosen.fusion, res.chosen.weights) > top1(
        "weighted", {"dense": 1, "sparse": 0.3, "multivector": 1}
    )


def test_candidates_are_the_union_of_dense_and_sparse_tops():
    mats = {
        "dense": np.array([[3.0, 2.0, 1.0, 0.0]]),
        "sparse": np.array([[0.0, 0.0, 0.0, 5.0]]),
        "multivector": np.zeros((1, 4)),
    }
    assert candidate_sets(mats, 1)[0].tolist() == [0, 3]


def _key(row: dict) -> tuple:
    return row["fusion"], tuple(sorted(row["weights"].items()))


def test_several_dev_sets_score_each_point_by_the_mean_over_sets():
    a, b = _set(30, 60), _set(20, 50)
    ma, mb = _mats(30, 60, "sparse", seed=1), _mats(20, 50, "multivector", seed=2)
    both = tune_fusion_sets([(ma, a), (mb, b)], margin=0.0)
    one_a, one_b = tune_fusion(ma, a), tune_fusion(mb, b)
    by_a = {_key(r): r["ndcg@10"] for r in one_a.table}
    by_b = {_key(r): r["ndcg@10"] for r in one_b.table}
    for row in both.table:
        assert row["ndcg@10"] == pytest.approx((by_a[_key(row)] + by_b[_key(row)]) / 2)
    assert both.default_ndcg == pytest.approx((one_a.default_ndcg + one_b.default_ndcg) / 2)
    assert both.chosen.tuned["dev_sets"] == ["dev", "dev"] and both.chosen.tuned["num_queries"] == 50
    # one set alone is tune_fusion itself
    assert tune_fusion_sets([(ma, a)]).table == one_a.table


def test_several_dev_sets_need_the_same_heads():
    a = _set(5, 10)
    m = _mats(5, 10, "dense")
    with pytest.raises(ConfigError, match="same heads"):
        tune_fusion_sets([(m, a), ({"dense": m["dense"], "sparse": m["sparse"]}, a)])
    with pytest.raises(ConfigError, match="at least one dev set"):
        tune_fusion_sets([])


def _coverage_dev(n_low: int, n_high: int = 40, nd: int = 80) -> tuple[dict[str, np.ndarray], RetrievalSet]:
    """English queries (well covered by MiniLM's vocabulary) whose multi-vector head is right, and
    Chinese ones (one character per token) whose sparse head is right; everything else is noise."""
    nq = n_low + n_high
    data = _set(nq, nd)
    texts = [f"where is station number {i}" for i in range(n_high)]
    texts += ["\u8eca\u7ad9\u5728\u54ea\u88e1" + "\u7ad9" * (i % 5) for i in range(n_low)]  # Chinese: 1 char/token
    data = RetrievalSet(
        name="dev", query_ids=data.query_ids, query_texts=texts, doc_ids=data.doc_ids,
        doc_texts=data.doc_texts, qrels=data.qrels,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    mats = {h: rng.normal(0, 1, (nq, nd)) for h in ("dense", "sparse", "multivector")}
    mats["multivector"][np.arange(n_high), np.arange(n_high)] += 4.0
    mats["sparse"][np.arange(n_high, nq), np.arange(n_high, nq)] += 4.0
    return mats, data


def test_coverage_split_gives_low_coverage_queries_their_own_weights():
    from transformers import AutoTokenizer

    from embforge.model.builders import bundled_model_path

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    mats, data = _coverage_dev(40)
    res = tune_fusion_sets([(mats, data)], margin=0.01, tokenizer=tok)
    split, info = res.chosen.low_coverage, res.chosen.tuned["low_coverage"]
    assert split is not None and info["decision"] == "split" and info["num_queries_low"] == 40
    assert split.weights["sparse"] / split.weights["multivector"] > (
        res.chosen.weights["sparse"] / res.chosen.weights["multivector"]
    )
    per_query = res.chosen.query_weights(data.query_texts, tok)
    assert per_query[0] == dict(res.chosen.weights) and per_query[-1] == dict(split.weights)
    assert res.chosen.query_weights(data.query_texts, tok, weights={"dense": 1.0}) is None  # explicit wins

    def ndcg(row_weights):
        run = fused_run(mats, data.query_ids, data.doc_ids, res.chosen.fusion, res.chosen.weights, 10,
                        row_weights=row_weights)  # fmt: skip
        return sum(next(iter(r)) == f"d{i}" for i, r in enumerate(run.values()))

    assert ndcg(per_query) > ndcg(None)  # the split ranks more queries' document first
    assert info["ndcg@10"] > res.best["ndcg@10"] + 0.01
    assert 0 < info["gain_ci95"][0] <= info["gain"] <= info["gain_ci95"][1]  # a real gain: significant too
    assert info["cv_gain"] > 0 and info["cv_folds"] == 5  # the decision: the held-out folds gain


def _same_groups_dev(seed: int, n: int) -> tuple[dict[str, np.ndarray], RetrievalSet]:
    """n English and n Chinese queries whose heads are all equally, weakly informative: the two
    coverage groups do not differ, so any split is fit to noise."""
    _, data = _coverage_dev(n, n, nd=2 * n)  # its query texts and ids
    rng = np.random.default_rng(seed)
    nq = 2 * n
    mats = {h: rng.normal(0, 1, (nq, 60)) for h in ("dense", "sparse", "multivector")}
    for h in mats:
        mats[h][np.arange(nq), np.arange(nq) % 60] += 1.5
    qrels = {q: {f"d{i % 60}": 1} for i, q in enumerate(data.query_ids)}
    return mats, RetrievalSet(
        "dev", data.doc_ids[:60], data.doc_texts[:60], data.query_ids, data.query_texts, qrels
    )


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_a_split_fit_to_noise_is_not_kept(seed):
    from transformers import AutoTokenizer

    from embforge.model.builders import bundled_model_path

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    res = tune_fusion_sets([_same_groups_dev(seed, 200)], tokenizer=tok)
    info = res.chosen.tuned["low_coverage"]
    assert res.chosen.low_coverage is None, info
    assert info["decision"] in ("no split: one point suits both", "no split: cross-validated gain <= 0")


def test_cross_validation_rechooses_on_each_fold():
    from embforge.eval.tune import _cross_validated_gain, _Grid

    rng = np.random.default_rng(0)
    low = [np.arange(100) % 2 == 0]
    a, b = rng.uniform(0, 1, 100), rng.uniform(0, 1, 100)
    paper, p1, p2 = (
        ModelFusion(),
        ModelFusion("weighted", {"dense": 1.0}),
        ModelFusion("weighted", {"sparse": 1.0}),
    )
    # option 1 is right for the well-covered queries, option 2 for the low-coverage ones
    good_hi = np.where(low[0], a * 0.2, 0.8 + a * 0.2)
    good_lo = np.where(low[0], 0.8 + b * 0.2, b * 0.2)
    grid = _Grid([paper, p1, p2], [[np.full(100, 0.3)], [good_hi], [good_lo]], low, margin=0.01)
    assert grid.split_of(1, [np.ones(100, bool)]) == (1, 2)
    assert _cross_validated_gain(grid) > 0.3  # about half the queries gain 0.6-0.8 on their fold
    same = _Grid([paper, p1, p2], [[np.full(100, 0.3)], [good_hi], [good_hi]], low, margin=0.01)
    assert _cross_validated_gain(same) == 0.0  # nothing to split: the folds choose one point


def test_split_test_is_a_stratified_paired_bootstrap():
    from embforge.eval.tune import _stratified_bootstrap

    rng = np.random.default_rng(1)
    better = [rng.normal(0.05, 0.1, 300), rng.normal(0.05, 0.1, 40)]
    lo, hi = _stratified_bootstrap(better)
    assert 0 < lo < 0.05 < hi
    noise = [rng.normal(0.0, 0.1, 300), rng.normal(0.0, 0.1, 40)]
    lo, hi = _stratified_bootstrap(noise)
    assert lo < 0 < hi  # a gain within the query noise is not kept
    # each set weighs the same, whatever its size: a small set's large gain moves the mean
    lo, hi = _stratified_bootstrap([np.zeros(300), np.full(10, 0.2)])
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    assert _stratified_bootstrap(noise) == _stratified_bootstrap(noise)  # seeded


def test_no_coverage_split_without_enough_low_coverage_queries():
    from transformers import AutoTokenizer

    from embforge.model.builders import bundled_model_path

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    mats, data = _coverage_dev(5)
    res = tune_fusion_sets([(mats, data)], tokenizer=tok)
    assert res.chosen.low_coverage is None
    assert res.chosen.tuned["low_coverage"]["decision"].startswith("no split: 5 low-coverage")


def test_few_dev_queries_get_a_note_and_enough_get_none():
    from embforge.cli.tune_fusion import FEW_DEV_QUERIES, few_queries_note

    assert "350 dev queries in all" in (few_queries_note(350) or "")
    assert few_queries_note(FEW_DEV_QUERIES) is None and few_queries_note(4200) is None
