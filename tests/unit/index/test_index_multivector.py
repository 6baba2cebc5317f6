from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import DataError
from embforge.index import MultiVectorIndex, load_index
from embforge.scoring import multivector_list_scores
from helpers.index_testdata import random_multivector

IDS = [f"d{i}" for i in range(400)]


def maxsim(q, d):
    """Brute-force reference: the definition, one pair at a time."""
    if len(q) == 0 or len(d) == 0:
        return 0.0
    return float(sum(max(float(qi @ dj) for dj in d) for qi in q) / len(q))


def brute(qs, docs, k):
    s = np.array([[maxsim(q, d) for d in docs] for q in qs])
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return [[f"d{r}" for r in row] for row in order], np.take_along_axis(s, order, axis=1)


def test_maxsim_divides_by_query_tokens():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    d = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    assert maxsim(q, d) == pytest.approx((1.0 + 0.8 + 1.0) / 3)
    assert multivector_list_scores([q], [d])[0, 0] == pytest.approx((1.0 + 0.8 + 1.0) / 3)


@pytest.mark.parity
def test_maxsim_matches_flagembedding_colbert_score():
    import torch

    qs, docs = random_multivector(3, 16, seed=0), random_multivector(5, 16, seed=1)
    for q in qs:
        for d in docs:
            # FlagEmbedding BGEM3FlagModel.colbert_score: einsum, max over doc tokens, sum / n_q
            tq, td = torch.from_numpy(q), torch.from_numpy(d)
            ref = (torch.einsum("in,jn->ij", tq, td).max(-1)[0].sum() / tq.size(0)).item()
            assert multivector_list_scores([q], [d])[0, 0] == pytest.approx(ref, rel=1e-6)


@pytest.mark.parity
def test_bruteforce_search_and_rerank_equal_reference():
    docs, qs = random_multivector(400, 16, seed=2), random_multivector(6, 16, seed=3, max_tokens=5)
    idx = MultiVectorIndex(dtype="float32", chunk_tokens=300)  # many blocks
    idx.add(IDS[:150], docs[:150])
    idx.add(IDS[150:400], docs[150:])
    ref_ids, ref_vals = brute(qs, docs, 10)
    hits = idx.search(qs, k=10)
    assert hits.ids == ref_ids
    np.testing.assert_allclose(hits.scores, ref_vals, rtol=1e-5)
    cand = [list(reversed(r)) + ["unknown"] for r in ref_ids]
    rr = idx.rerank(qs, cand)
    assert rr.ids == ref_ids


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-3), ("int8", 2e-2)])
def test_compressed_storage_close_to_float(tmp_path, dtype, tol):
    docs, qs = random_multivector(200, 32, seed=4), random_multivector(4, 32, seed=5)
    idx = MultiVectorIndex(dtype=dtype)
    idx.add(IDS[:200], docs)
    idx.save(tmp_path / "mv")
    loaded = load_index(tmp_path / "mv")
    assert isinstance(loaded._store[0], np.memmap)  # memory-mapped from disk
    assert loaded._store[0].dtype == np.dtype(dtype)
    cand = [IDS[:50]] * len(qs)
    got = np.array(loaded.score(qs, cand))
    ref = np.array([[maxsim(q, docs[i]) for i in range(50)] for q in qs])
    np.testing.assert_allclose(got, ref, atol=tol)


def test_multivector_delete_add_and_errors(tmp_path):
    docs, qs = random_multivector(100, 8, seed=6), random_multivector(2, 8, seed=7)
    idx = MultiVectorIndex()
    idx.add(IDS[:100], docs)
    top = idx.search(qs, k=3).ids
    idx.delete([top[0][0]])
    assert top[0][0] not in idx.search(qs, k=3).ids[0]
    idx.save(tmp_path / "mv")
    loaded = load_index(tmp_path / "mv")
    loaded.add(["new"], [qs[0]])  # a document identical to query 0 ranks first
    assert loaded.search(qs[:1], k=1).ids == [["new"]]
    loaded.compact()
    assert len(loaded) == 100 and loaded.search(qs[:1], k=1).ids == [["new"]]
    with pytest.raises(DataError, match="dim 4 but the index holds dim 8"):
        idx.search([np.ones((2, 4), np.float32)], k=1)


def test_empty_token_lists_score_zero():
    idx = MultiVectorIndex(dtype="float32")
    idx.add(["empty", "one"], [np.zeros((0, 4), np.float32), np.eye(4, dtype=np.float32)[:1]])
    q = [np.eye(4, dtype=np.float32)[:2]]
    np.testing.assert_allclose(idx.score(q, [["empty", "one"]])[0], [0.0, 0.5])
    hits = idx.search(q, k=2)
    assert hits.ids == [["one", "empty"]] and hits.scores == [[0.5, 0.0]]
