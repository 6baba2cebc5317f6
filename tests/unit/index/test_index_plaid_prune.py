"""PlaidIndex centroid pruning (PLAID's t_cs) and the document mean residual term: pruning off
equals brute force on a tiny set, a threshold below every score equals no pruning, recall with
pruning on, pruned residual scoring, and the doc-mean array's save/load/recompute/bounds checks."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import CheckpointError, ConfigError
from embforge.index import MultiVectorIndex, PlaidIndex, load_index
from embforge.index._plaid_kernel import _interaction, residual_interaction
from helpers.index_testdata import topical_docs

IDS = [f"d{i}" for i in range(400)]


@pytest.fixture(scope="module")
def data():
    docs = topical_docs(400, 32, seed=5)
    queries = [d[: min(6, len(d))] + 0.1 for d in topical_docs(10, 32, seed=6)]
    exact = MultiVectorIndex(dtype="float32")
    exact.add(IDS, docs)
    return docs, queries, exact


def test_pruning_off_every_list_equals_brute_force(data):
    docs, queries, exact = data
    idx = PlaidIndex(nlist=16, nprobe=16, ndocs=400, exact=400, t_cs=None, dtype="float32")
    idx.add(IDS, docs)
    got, ref = idx.search(queries, k=10), exact.search(queries, k=10)
    assert got.ids == ref.ids
    np.testing.assert_allclose(np.concatenate(got.scores), np.concatenate(ref.scores), atol=1e-5)


def test_threshold_below_every_score_is_no_pruning(data):
    docs, queries, _ = data
    idx = PlaidIndex(nlist=16, nprobe=2, ndocs=40, exact=10, t_cs=None)
    idx.add(IDS, docs)
    c = idx._build()
    off = idx._shortlists(queries, c, 10)
    idx.t_cs = -1e30  # keeps every centroid
    on = idx._shortlists(queries, c, 10)
    assert [sorted(a.tolist()) for a in off] == [sorted(b.tolist()) for b in on]


def test_recall_with_pruning_on(data):
    docs, queries, exact = data
    idx = PlaidIndex(nlist=16, t_cs=0.2)
    idx.add(IDS, docs)
    got, ref = idx.search(queries, k=10), exact.search(queries, k=10)
    kth = np.array([s[-1] for s in ref.scores])
    rec = np.mean([(np.array(s) >= t - 1e-3).sum() / 10 for s, t in zip(got.scores, kth)])
    assert rec >= 0.9


def test_pruned_tokens_score_their_centroid():
    """Stage 4 with every centroid pruned is the plain centroid interaction; with none pruned
    it adds the residual lookups (so the two differ)."""
    rng = np.random.default_rng(0)
    st = rng.standard_normal((8, 3)).astype(np.float32)  # (nlist, Tq)
    lut = rng.standard_normal((2, 4, 3)).astype(np.float32)  # (pq_m, ksub, Tq)
    offsets, cid = np.array([0, 3, 5]), np.array([1, 4, 7, 0, 2], np.uint16)
    codes = rng.integers(0, 4, (5, 2)).astype(np.uint8)
    rows, out, ci = np.array([0, 1]), np.empty(2, np.float32), np.empty(2, np.float32)
    no_mean = np.zeros((0, 3), np.float32)
    residual_interaction(st, lut, rows, offsets, cid, codes, out, np.zeros(8, np.bool_))
    _interaction(
        st,
        rows,
        offsets,
        cid,
        np.ones(8, np.bool_),
        -np.inf,
        np.empty(3, np.float32),
        ci,
        np.zeros(3, np.float32),
        no_mean,
    )
    np.testing.assert_allclose(out, ci, rtol=1e-6)
    residual_interaction(st, lut, rows, offsets, cid, codes, out, np.ones(8, np.bool_))
    assert not np.allclose(out, ci)


def test_bad_threshold_refused():
    with pytest.raises(ConfigError, match="finite t_cs"):
        PlaidIndex(t_cs=float("nan"))


def test_doc_mean_saved_recomputed_and_checked(tmp_path, data):
    docs, queries, _ = data
    idx = PlaidIndex(nlist=16)
    idx.add(IDS, docs)
    hits = idx.search(queries, k=5)
    d = idx.save(tmp_path / "pl")
    saved = np.load(d / "plaid_doc_mean.npy")
    assert saved.shape == (400, 32) and saved.dtype == np.float16
    (d / "plaid_doc_mean.npy").unlink()  # an index written before the array existed
    old = load_index(d)
    np.testing.assert_allclose(
        np.asarray(old._codes["doc_mean"], np.float32), saved.astype(np.float32), atol=1e-3
    )
    assert old.search(queries, k=5).ids == hits.ids
    np.save(d / "plaid_doc_mean.npy", saved[:, :7])  # damaged: wrong width
    with pytest.raises(CheckpointError, match="plaid_doc_mean"):
        load_index(d)
    np.save(d / "plaid_doc_mean.npy", saved[:9])  # damaged: wrong row count
    with pytest.raises(CheckpointError, match="plaid_doc_mean"):
        load_index(d)
