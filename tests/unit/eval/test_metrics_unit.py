import numpy as np
import pytest
from scipy import stats

from embforge.errors import DataError
from embforge.eval import metrics as M


def test_known_values_by_hand():
    qrels = {"q1": {"d1": 2, "d2": 1}}
    run = {"q1": {"d1": 0.9, "d3": 0.5, "d2": 0.1}}
    m = M.evaluate(qrels, run, (1, 3))
    idcg = 2 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx((2 + 1 / np.log2(4)) / idcg)
    assert m["ndcg@1"] == 1.0
    assert m["recall@1"] == 0.5 and m["recall@3"] == 1.0
    assert m["mrr@3"] == 1.0
    assert m["map"] == pytest.approx((1 + 2 / 3) / 2)


def test_relevance_level_changes_binary_measures_only():
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"a": 2.0, "b": 1.0}}
    m1 = M.evaluate(qrels, run, (1,))
    m2 = M.evaluate(qrels, run, (1,), relevance_level=2)
    assert m1["mrr@1"] == 1.0 and m2["mrr@1"] == 0.0
    assert m1["ndcg@1"] == m2["ndcg@1"]


def test_bad_k_and_missing_choice_raise():
    with pytest.raises(DataError, match="k_values must be positive integers"):
        M.evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, (0,))
    with pytest.raises(DataError, match="choose from: skip, zero"):
        M.evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, missing="drop")


def test_run_from_scores_keeps_top_k():
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]])
    run = M.run_from_scores(scores, ["q0", "q1"], ["a", "b", "c"], k=2)
    assert set(run["q0"]) == {"b", "c"} and set(run["q1"]) == {"a", "b"}
    assert run["q0"]["b"] == pytest.approx(0.9)
    with pytest.raises(DataError, match="expected"):
        M.run_from_scores(scores, ["q0"], ["a", "b", "c"])


def test_accuracy_at_1():
    s = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert M.accuracy_at_1(s) == 0.5
    assert M.accuracy_at_1(s, np.array([0, 0])) == 1.0


def test_sts_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8))
    gold = rng.integers(0, 6, 50).astype(float)  # many ties
    r = M.sts_correlations(a, b, gold)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert r["spearman"] == pytest.approx(stats.spearmanr(cos, gold).statistic, abs=1e-12)
    assert r["pearson"] == pytest.approx(stats.pearsonr(cos, gold).statistic, abs=1e-12)


def test_alignment_uniformity_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 4))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x + 0.1 * rng.normal(size=x.shape)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    assert M.alignment(x, y) == pytest.approx(np.mean([np.sum((x[i] - y[i]) ** 2) for i in range(20)]))
    ref = np.log(
        np.mean([np.exp(-2 * np.sum((x[i] - x[j]) ** 2)) for i in range(20) for j in range(i + 1, 20)])
    )
    assert M.uniformity(x) == pytest.approx(ref)
    # collapsed embeddings are maximally non-uniform (0), spread ones are negative
    assert M.uniformity(np.tile(x[:1], (5, 1))) == pytest.approx(0.0)
    assert M.uniformity(x) < -0.5
