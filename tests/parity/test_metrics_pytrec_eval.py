"""Retrieval metrics equal pytrec_eval (trec_eval) on random runs and qrels."""

import numpy as np
import pytest

from embforge.eval import metrics as M
from helpers.requires import require_module

pytrec_eval = require_module("pytrec_eval", "pip install -e '.[dev]' (pytrec-eval-terrier)")

pytestmark = pytest.mark.parity

K = (1, 3, 5, 10, 20)


def _random_case(seed: int, graded: bool, ties: bool):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for qi in range(40):
        q = f"q{qi}"
        n_docs = int(rng.integers(1, 60))
        docs = [f"d{int(x)}" for x in rng.choice(200, size=n_docs, replace=False)]
        # scores on a coarse grid when testing ties, so many equal scores occur
        sc = rng.integers(0, 5, n_docs).astype(float) if ties else rng.normal(size=n_docs)
        run[q] = {d: float(s) for d, s in zip(docs, sc)}
        judged = rng.choice(200, size=int(rng.integers(0, 15)), replace=False)
        top = 3 if graded else 1
        qrels[q] = {f"d{int(x)}": int(rng.integers(0, top + 1)) for x in judged}
    qrels["only_in_qrels"] = {"d1": 1}
    return qrels, run


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_query_equal_to_pytrec_eval(seed, graded, ties):
    qrels, run = _random_case(seed, graded, ties)
    measures = {
        "ndcg_cut." + ",".join(map(str, K)),
        "recall." + ",".join(map(str, K)),
        "P." + ",".join(map(str, K)),
        "map",
        "recip_rank",
    }
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = M.per_query(qrels, run, K)
    assert set(ours) == set(ref)
    for q in ref:
        for k in K:
            assert ours[q][f"ndcg@{k}"] == pytest.approx(ref[q][f"ndcg_cut_{k}"], abs=1e-12), (q, k)
            assert ours[q][f"recall@{k}"] == pytest.approx(ref[q][f"recall_{k}"], abs=1e-12), (q, k)
            assert ours[q][f"precision@{k}"] == pytest.approx(ref[q][f"P_{k}"], abs=1e-12), (q, k)
        assert ours[q]["map"] == pytest.approx(ref[q]["map"], abs=1e-12), q


@pytest.mark.parametrize("ties", [False, True])
def test_mrr_at_k_equals_recip_rank_of_truncated_run(ties):
    qrels, run = _random_case(7, graded=True, ties=ties)
    for k in (1, 5, 10):
        # truncate with trec_eval's own order, then recip_rank over what is left
        trunc = {q: {d: run[q][d] for d in M._ranked_doc_ids(run[q])[:k]} for q in run}
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(trunc)
        ours = M.per_query(qrels, run, (k,))
        for q in ref:
            assert ours[q][f"mrr@{k}"] == pytest.approx(ref[q]["recip_rank"], abs=1e-12)


def test_ties_broken_by_docid_descending_like_trec_eval():
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}}
    assert M._ranked_doc_ids(run["q"]) == ["d", "c", "b", "a"]
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank", "map"}).evaluate(run)["q"]
    ours = M.per_query(qrels, run, (10,))["q"]
    assert ours["mrr@10"] == pytest.approx(ref["recip_rank"]) == pytest.approx(1 / 3)
    assert ours["map"] == pytest.approx(ref["map"])


def test_mean_skip_matches_pytrec_mean_and_zero_counts_missing_queries():
    qrels, run = _random_case(3, graded=True, ties=False)
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    mean_ref = np.mean([v["ndcg_cut_10"] for v in ref.values()])
    skip = M.evaluate(qrels, run, (10,), missing="skip")
    zero = M.evaluate(qrels, run, (10,))
    assert skip["ndcg@10"] == pytest.approx(mean_ref, abs=1e-12)
    assert zero["ndcg@10"] == pytest.approx(
        mean_ref * len(ref) / sum(1 for j in qrels.values() if j), abs=1e-12
    )
    assert zero["num_queries"] == sum(1 for j in qrels.values() if j)
