"""PlaidIndex: recall against exact MaxSim at the shipped settings, exact final scores,
save/load (memory-mapped), crash-safe save, deletes and adds after a build."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import ConfigError
from embforge.index import MultiVectorIndex, PlaidIndex, load_index
from helpers.index_testdata import check_plaid_save_crash, topical_docs

IDS = [f"d{i}" for i in range(600)]


@pytest.fixture(scope="module")
def data():
    docs = topical_docs(600, 32, seed=0)
    queries = [d[: min(6, len(d))] + 0.1 for d in topical_docs(12, 32, seed=1)]
    exact = MultiVectorIndex(dtype="float32")
    exact.add(IDS, docs)
    return docs, queries, exact


def test_recall_against_exact_maxsim_at_shipped_settings(data):
    docs, queries, exact = data
    idx = PlaidIndex()  # shipped defaults
    idx.add(IDS, docs)
    got, ref = idx.search(queries, k=10), exact.search(queries, k=10)
    kth = np.array([s[-1] for s in ref.scores])
    # tie-aware recall@10: a hit counts if its exact score reaches the exact 10th score
    rec = np.mean([(np.array(s) >= t - 1e-3).sum() / 10 for s, t in zip(got.scores, kth)])
    assert rec >= 0.95
    # the final scores are exact MaxSim (re-scored from the token store)
    again = exact.score(queries, got.ids)
    np.testing.assert_allclose(np.concatenate(got.scores), np.concatenate(again), atol=2e-3)


def test_fewer_candidates_than_corpus_and_compressed_smaller(data):
    docs, queries, _ = data
    idx = PlaidIndex(nprobe=1)
    idx.add(IDS, docs)
    c = idx._build()
    cand, _ = idx._candidates(queries[0], c)
    assert 0 < len(cand) < len(docs)  # candidate generation is not brute force
    sizes = idx.nbytes()
    assert sizes["compressed"] < sizes["exact_store"]


def test_candidates_score_is_maxsim_over_centroids(data):
    """The numba centroid interaction equals MaxSim with every token replaced by its centroid,
    plus the query's summed tokens times the document's mean token residual."""
    docs, queries, _ = data
    idx = PlaidIndex(nprobe=2)
    idx.add(IDS, docs)
    c = idx._build()
    q = queries[3]
    rows, approx = idx._candidates(q, c)
    assert len(np.unique(rows)) == len(rows)  # each document scored once
    off, cent, v = idx.store[2], c["centroids"], idx.store[0]
    for r, a in list(zip(rows, approx))[:20]:
        cid = c["token_cid"][off[r] : off[r + 1]]
        mean = (v[off[r] : off[r + 1]] - cent[cid]).mean(axis=0)  # the document's mean token residual
        want = (q @ cent[cid].T).max(axis=1).sum() + q.sum(axis=0) @ mean
        np.testing.assert_allclose(a, want, rtol=1e-3, atol=1e-3)  # the mean is stored as float16
    # every document holding a token of a probed centroid is a candidate, no other
    probe = np.unique(np.argsort(-(q @ cent.T), axis=1)[:, :2])
    holds = {int(d) for p in probe for d in c["ivf_docs"][c["ivf_ptr"][p] : c["ivf_ptr"][p + 1]]}
    assert set(rows.tolist()) == holds


def test_residual_lookup_scores_equal_decoded_maxsim(data):
    """Stage 4 by PQ lookup tables (8-bit codes) equals MaxSim over the decoded tokens."""
    _, queries, _ = data
    docs = topical_docs(1500, 32, seed=2)  # >= 39 x 256 training tokens: 8-bit codes
    idx = PlaidIndex(nlist=32)
    idx.add([str(i) for i in range(1500)], docs)
    c = idx._build()
    assert idx.pq_bits == 8
    cand = np.arange(0, 1500, 7)
    by_table = idx._decompressed(queries[0], cand, c)
    idx.pq_bits = 7  # forces the decode path (the codes themselves are unchanged)
    decoded = idx._decompressed(queries[0], cand, c)
    np.testing.assert_allclose(by_table, decoded, atol=1e-5)


def test_save_load_mmap_and_add_after_load(tmp_path, data):
    docs, queries, _ = data
    idx = PlaidIndex(dtype="float16")
    idx.add(IDS[:500], docs[:500])
    hits = idx.search(queries, k=5)
    idx.save(tmp_path / "pl")
    loaded = load_index(tmp_path / "pl")
    assert isinstance(loaded, PlaidIndex) and loaded.config() == idx.config()
    assert isinstance(loaded._codes["codes"], np.memmap)
    again = loaded.search(queries, k=5)
    assert again.ids == hits.ids
    np.testing.assert_allclose(again.scores, hits.scores, rtol=1e-6)
    loaded.add(IDS[500:], docs[500:])  # codes rebuilt, centroids and PQ kept
    assert len(loaded) == 600 and loaded.search(queries, k=5).ids[0]


def test_crash_during_save_keeps_previous_index(tmp_path, monkeypatch, data):
    docs, queries, _ = data
    check_plaid_save_crash(PlaidIndex(), IDS, docs, queries, 300, tmp_path / "pl", monkeypatch)


def test_delete_and_bad_config(data):
    docs, queries, _ = data
    idx = PlaidIndex()
    idx.add(IDS, docs)
    top = idx.search(queries[:1], k=3).ids[0][0]
    idx.delete([top])
    assert top not in idx.search(queries[:1], k=10).ids[0]
    with pytest.raises(ConfigError, match="nprobe >= 1"):
        PlaidIndex(nprobe=0)


@pytest.mark.parametrize("n_threads", [1, 0])
def test_parallel_shortlists_equal_per_query_reference(data, n_threads):
    """The parallel numba kernel (stages 1-4 over a block of queries) keeps exactly the documents
    the per-query reference keeps: the ``ndocs`` best by centroid interaction of the probed lists,
    then the ``keep`` best of those by PQ-residual MaxSim (lookup tables)."""
    _, queries, _ = data
    docs = topical_docs(1500, 32, seed=2)  # 8-bit codes: stage 4 runs inside the kernel
    idx = PlaidIndex(
        nlist=32, nprobe=2, ndocs=60, n_threads=n_threads, t_cs=None
    )  # the reference does not prune
    idx.add([str(i) for i in range(1500)], docs)
    c = idx._build()
    assert idx.pq_bits == 8
    qs = queries + [queries[0][:1], np.concatenate(queries[:4])]  # 1-token and 24-token queries too
    for keep in (60, 15):
        got = idx._shortlists(qs, c, keep)
        for q, g in zip(qs, got):
            rows, approx = idx._candidates(q, c)
            want = rows[np.argsort(-approx, kind="stable")[:60]]
            if keep < 60:
                want = want[np.argsort(-idx._decompressed(q, want, c), kind="stable")[:keep]]
            assert sorted(g.tolist()) == sorted(want.tolist())


def test_parallel_search_same_hits_for_any_thread_count(data):
    docs, queries, _ = data
    idx = PlaidIndex(nlist=16, ndocs=80, exact=20)
    idx.add(IDS, docs)
    one = idx.search(queries, k=5)
    idx.n_threads = 0
    assert idx.search(queries, k=5).ids == one.ids
