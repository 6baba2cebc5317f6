from pathlib import Path

import numpy as np
import pytest

from embforge.eval import metrics as M  # noqa: E402
from embforge.eval import runner as R  # noqa: E402
from embforge.eval.datasets import load_beir, load_bitext, load_sts  # noqa: E402
from embforge.scoring import embedding_scores, multivector_list_scores  # noqa: E402
from helpers.fake_encoder import FakeEncoder

DEMO = Path(__file__).parents[3] / "src/embforge/resources/demo"


@pytest.fixture(scope="module")
def small():
    data = load_beir(DEMO / "xquad-en", split="test", max_queries=40)
    assert data.language == "en" and len(data.doc_ids) == 240
    return data


def test_topk_merge_equals_full_sort():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 103))
    t = R.TopK(5, 10)
    for start in range(0, 103, 17):
        t.add(s[:, start : start + 17], start)
    for i in range(5):
        assert set(t.index[i]) == set(np.argsort(-s[i])[:10])


def test_maxsim_brute_force():
    rng = np.random.default_rng(1)
    q = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 3)]
    d = [rng.normal(size=(n, 4)).astype(np.float32) for n in (1, 5, 2)]
    np.testing.assert_allclose(
        multivector_list_scores(q, d, block=1), multivector_list_scores(q, d), rtol=1e-6
    )
    ref = np.array([[np.mean([max(float(a @ b) for b in dj) for a in qi]) for dj in d] for qi in q])
    np.testing.assert_allclose(multivector_list_scores(q, d), ref, rtol=1e-5)


def test_chunked_retrieval_equals_exact_full_matrix(small):
    enc = FakeEncoder()
    heads = ("dense", "sparse", "multivector")
    res = R.evaluate_retrieval(enc, small, heads=heads, mrl_dims=None, chunk_size=50, k_values=(1, 10, 100))
    qe = enc.encode(small.query_texts, "query", heads)
    de = enc.encode(small.doc_texts, "document", heads)
    full = {h: embedding_scores(qe, de, h) for h in heads}
    for h in heads:
        ref = M.evaluate(
            small.qrels, M.run_from_scores(full[h], small.query_ids, small.doc_ids, 100), (1, 10, 100)
        )
        assert res["heads"][h]["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-6), h
        if h != "sparse":  # sparse has many tied zero scores at the cut: any of them may be kept
            assert res["heads"][h]["recall@100"] == pytest.approx(ref["recall@100"], abs=1e-6), h
    hyb = full["dense"] + 0.3 * full["sparse"] + full["multivector"]
    ref = M.evaluate(small.qrels, M.run_from_scores(hyb, small.query_ids, small.doc_ids, 100), (10,))
    assert res["heads"]["hybrid"]["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-6)
    assert res["hybrid_weights"] == {"dense": 1.0, "sparse": 0.3, "multivector": 1.0}
    assert list(res["mrl"]) == ["32", "48"]
    assert res["mrl"]["48"] == pytest.approx(res["heads"]["dense"]["ndcg@10"], abs=1e-6)
    assert 0 < res["heads"]["bm25"]["ndcg@10"] <= 1
    # a bag-of-words lexical model finds the paragraph of many xquad questions
    assert res["heads"]["bm25"]["ndcg@10"] > 0.3
    assert res["health"]["uniformity"] < 0


def test_sts_and_bitext(tmp_path):
    p = tmp_path / "stsb-de-dev.csv"
    p.write_text('a cat sat,a cat sat,5.0\n"dogs, run",the sky,0.5\nred car,a red car,4.0\n')
    sts = load_sts(p)
    assert sts.language == "de" and len(sts.scores) == 3
    r = R.evaluate_sts(FakeEncoder(), sts)
    assert r["spearman"] == pytest.approx(1.0)
    src, tgt = tmp_path / "t.kor", tmp_path / "t.eng"
    src.write_text("a cat\nthe dog\n")
    tgt.write_text("a cat\nthe dog\n")
    b = R.evaluate_bitext(FakeEncoder(), load_bitext(src, tgt))
    assert b["accuracy@1"] == 1.0 and b["language"] == "kor"


def test_rerank_mode_equals_exact_when_candidates_cover_corpus_and_is_close_otherwise(small):
    enc = FakeEncoder()
    heads = ("dense", "sparse", "multivector")
    kw = dict(heads=heads, mrl_dims=(), k_values=(1, 10), bm25=False, health=False, chunk_size=100)
    exact = R.evaluate_retrieval(enc, small, **kw)
    full = R.evaluate_retrieval(enc, small, rerank_top=240, **kw)  # candidates = the whole corpus
    assert exact["mode"] == "exact" and full["mode"].startswith("rerank-top 240")
    for h in ("dense", "multivector", "hybrid"):  # sparse: tied zero scores at the cut may differ
        assert full["heads"][h]["ndcg@10"] == pytest.approx(exact["heads"][h]["ndcg@10"], abs=1e-6), h
    few = R.evaluate_retrieval(enc, small, rerank_top=20, **kw)
    for h in ("dense",):  # its own top-20 are candidates: its top-10 is unchanged
        assert few["heads"][h]["ndcg@10"] == pytest.approx(exact["heads"][h]["ndcg@10"], abs=1e-6), h
    assert abs(few["heads"]["hybrid"]["ndcg@10"] - exact["heads"]["hybrid"]["ndcg@10"]) < 0.05
    with pytest.raises(R.ConfigError, match="rerank_top needs the dense and/or sparse head"):
        R.evaluate_retrieval(enc, small, rerank_top=10, **{**kw, "heads": ("multivector",)})


def test_health_with_one_judged_document_reports_no_uniformity(small):
    """All judged queries share one positive: alignment is defined, uniformity (document pairs) is not."""
    from dataclasses import replace

    q = small.query_ids[0]
    d = next(iter(small.qrels[q]))
    one = replace(small, query_ids=[q], query_texts=[small.query_texts[0]], qrels={q: {d: 1}})
    res = R.evaluate_retrieval(FakeEncoder(), one, heads=("dense",), mrl_dims=None)
    assert res["health"]["uniformity"] is None and res["health"]["alignment"] >= 0


def test_bm25_matrix_scores_as_bm25_run():
    from embforge.eval.datasets import RetrievalSet
    from embforge.eval.runner import bm25_matrix, bm25_run

    docs = ["the cat sat on the mat", "a dog barked at the cat", "stocks fell on monday", "the mat was red"]
    data = RetrievalSet(
        name="t",
        query_ids=["q0", "q1"],
        query_texts=["cat on mat", "monday stocks"],
        doc_ids=[f"d{i}" for i in range(4)],
        doc_texts=docs,
        qrels={"q0": {"d0": 1}, "q1": {"d2": 1}},
    )
    m = bm25_matrix(str.split, data)
    run = bm25_run(str.split, data, k=4)
    for i, q in enumerate(data.query_ids):
        for did, score in run[q].items():
            assert m[i, data.doc_ids.index(did)] == pytest.approx(score, rel=1e-5)


def test_scores_out_are_the_tune_stage_matrices_and_leave_the_report_unchanged(small):
    """evaluate_all's on_scores hands over, per set, exactly what score_matrices computes (no
    second encoding needed to tune the fusion; both score the corpus in chunks of 2048); the
    report is the same with and without it."""
    from embforge.eval.tune import score_matrices

    enc = FakeEncoder()
    heads = ("dense", "sparse", "multivector")
    kw = dict(heads=heads, mrl_dims=(), k_values=(1, 10), bm25=False, health=False)
    got: dict[str, dict[str, np.ndarray]] = {}
    with_scores = R.evaluate_all(enc, [small], on_scores=lambda ds, m: got.setdefault(ds.name, m), **kw)
    plain = R.evaluate_all(enc, [small], **kw)
    for run in (with_scores, plain):
        run["retrieval"][small.name].pop("seconds")
    assert with_scores == plain
    ref = score_matrices(enc, small, heads)
    assert sorted(got[small.name]) == sorted(heads)
    for h in heads:
        m = got[small.name][h]
        assert m.dtype == np.float32 and m.shape == (len(small.query_ids), len(small.doc_ids))
        np.testing.assert_array_equal(m, ref[h])
    with pytest.raises(R.ConfigError, match="cannot be combined with rerank_top"):
        R.evaluate_retrieval(enc, small, rerank_top=20, scores_out={}, **kw)
    too_big = len(small.query_ids) * len(small.doc_ids) * len(heads) - 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(R, "MAX_FUSION_SCORES", too_big)
        with pytest.raises(R.ConfigError, match="evaluate a sample of the set"):
            R.evaluate_retrieval(enc, small, scores_out={}, **kw)
