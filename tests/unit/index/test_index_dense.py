from __future__ import annotations

import numpy as np
import pytest

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index import ExactDenseIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, load_index
from helpers.index_testdata import clustered, recall


def brute(q: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def ids_of(rows):
    return [[f"d{r}" for r in row] for row in rows]


IDS = [f"d{i}" for i in range(3000)]


@pytest.mark.parity
def test_exact_equals_brute_force_across_chunks():
    x, q = clustered(3000, 48, seed=0), clustered(20, 48, seed=1)
    idx = ExactDenseIndex(chunk_size=700)  # several chunks, last one partial
    idx.add(IDS[:1000], x[:1000])
    idx.add(IDS[1000:], x[1000:])  # incremental add
    hits = idx.search(q, k=15)
    rows, vals = brute(q, x, 15)
    assert hits.ids == ids_of(rows)
    np.testing.assert_allclose(hits.scores, vals, rtol=1e-6, atol=1e-6)


def test_matryoshka_truncates_and_renormalises():
    x, q = clustered(500, 64, seed=2), clustered(5, 64, seed=3)
    idx = ExactDenseIndex(dim=16)
    idx.add(IDS[:500], x)
    xt = x[:, :16] / np.linalg.norm(x[:, :16], axis=1, keepdims=True)
    qt = q[:, :16] / np.linalg.norm(q[:, :16], axis=1, keepdims=True)
    rows, vals = brute(qt, xt, 10)
    hits = idx.search(q, k=10)
    assert hits.ids == ids_of(rows)
    np.testing.assert_allclose(hits.scores, vals, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="truncates to dim=16"):
        idx.search(q[:, :8], k=3)


@pytest.mark.parametrize("quant,min_recall", [("int8", 0.99), ("binary", 0.9)])
def test_quantized_search_rescores_with_exact_floats(quant, min_recall):
    x, q = clustered(3000, 256, seed=4), clustered(30, 256, seed=5)
    idx = ExactDenseIndex(quantization=quant)  # shipped rescore defaults
    idx.add(IDS, x)
    hits = idx.search(q, k=10)
    rows, _ = brute(q, x, 10)
    assert recall(hits.ids, ids_of(rows)) >= min_recall
    # the returned scores are exact float inner products, not code approximations
    for qi, (hid, hs) in enumerate(zip(hits.ids, hits.scores)):
        exact = x[[int(h[1:]) for h in hid]] @ q[qi]
        np.testing.assert_allclose(hs, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parity
def test_hnsw_recall_at_shipped_settings():
    x, q = clustered(3000, 64, seed=6), clustered(50, 64, seed=7)
    idx = HNSWIndex()
    idx.add(IDS, x)
    rows, _ = brute(q, x, 10)
    assert recall(idx.search(q, k=10).ids, ids_of(rows)) >= 0.95


@pytest.mark.parity
def test_ivfpq_recall_at_shipped_settings():
    x, q = clustered(2000, 32, seed=8), clustered(50, 32, seed=9)
    idx = IVFPQIndex()
    idx.add(IDS[:2000], x)
    rows, vals = brute(q, x, 10)
    hits = idx.search(q, k=10)
    assert recall(hits.ids, ids_of(rows)) >= 0.95
    for qi, (hid, hs) in enumerate(zip(hits.ids, hits.scores)):  # rescored exactly
        np.testing.assert_allclose(hs, x[[int(h[1:]) for h in hid]] @ q[qi], rtol=1e-5, atol=1e-6)


@pytest.mark.parity
def test_ivf_flat_scores_are_exact_and_all_lists_equal_brute_force():
    """IVF-Flat keeps float vectors: returned scores are the exact inner products, and probing
    every list is exact search."""
    x, q = clustered(2000, 32, seed=14), clustered(50, 32, seed=15)
    idx = IVFFlatIndex(nlist=16, nprobe=16)
    idx.add(IDS[:2000], x)
    rows, vals = brute(q, x, 10)
    hits = idx.search(q, k=10)
    assert hits.ids == ids_of(rows)
    np.testing.assert_allclose(hits.scores, vals, rtol=1e-5, atol=1e-6)
    idx.nprobe = 8  # half the lists: approximate, but the scores stay exact
    few = idx.search(q, k=10)
    assert recall(few.ids, ids_of(rows)) >= 0.8
    for qi, (hid, hs) in enumerate(zip(few.ids, few.scores)):
        np.testing.assert_allclose(hs, x[[int(h[1:]) for h in hid]] @ q[qi], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="nprobe"):
        IVFFlatIndex(nprobe=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExactDenseIndex(),
        lambda: ExactDenseIndex(quantization="int8"),
        lambda: ExactDenseIndex(quantization="binary"),
        lambda: HNSWIndex(),
        lambda: IVFPQIndex(),
        lambda: IVFFlatIndex(),
    ],
    ids=["exact", "int8", "binary", "hnsw", "ivfpq", "ivf"],
)
def test_delete_add_and_save_load_roundtrip(tmp_path, make):
    x, q = clustered(1200, 32, seed=10), clustered(8, 32, seed=11)
    idx = make()
    idx.add(IDS[:1000], x[:1000])
    top = idx.search(q, k=5).ids
    gone = sorted({t[0] for t in top})
    assert idx.delete(gone + ["never-added"]) == len(gone)
    idx.add(IDS[1000:1200], x[1000:1200])
    hits = idx.search(q, k=5)
    assert not set(gone) & {i for row in hits.ids for i in row}
    assert len(idx) == 1200 - len(gone)
    idx.save(tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    assert type(loaded) is type(idx) and len(loaded) == len(idx)
    again = loaded.search(q, k=5)
    assert again.ids == hits.ids
    np.testing.assert_allclose(again.scores, hits.scores, rtol=1e-6)
    # re-adding a deleted id brings it back; replacing an id keeps one copy
    loaded.add([gone[0]], x[int(gone[0][1:])][None])
    loaded.add(["d5"], q[:1])
    assert loaded.search(q[:1], k=1).ids == [["d5"]]
    assert len(loaded) == len(idx) + 1


def test_exact_matches_brute_force_after_delete():
    x, q = clustered(800, 32, seed=12), clustered(6, 32, seed=13)
    idx = ExactDenseIndex(chunk_size=300)
    idx.add(IDS[:800], x)
    dead = [f"d{i}" for i in range(0, 800, 3)]
    idx.delete(dead)
    keep = np.array([i for i in range(800) if i % 3])
    rows, vals = brute(q, x[keep], 7)
    hits = idx.search(q, k=7)
    assert hits.ids == [[f"d{keep[r]}" for r in row] for row in rows]
    idx.compact()
    assert idx.search(q, k=7).ids == hits.ids


def test_dense_errors(tmp_path):
    idx = ExactDenseIndex()
    idx.add(["a", "b"], np.eye(2, 8, dtype=np.float32))
    with pytest.raises(DataError, match="dim 4 but the index holds dim 8"):
        idx.search(np.ones((1, 4), np.float32))
    with pytest.raises(DataError, match="dim 4 but the index holds dim 8"):
        idx.add(["c"], np.ones((1, 4), np.float32))
    with pytest.raises(DataError, match="'x' more than once"):
        idx.add(["x", "x"], np.ones((2, 8), np.float32))
    with pytest.raises(DataError, match="2 ids for 1 vectors"):
        idx.add(["x", "y"], np.ones((1, 8), np.float32))
    with pytest.raises(DataError, match="k must be a positive integer"):
        idx.search(np.ones((1, 8), np.float32), k=0)
    with pytest.raises(ConfigError, match="unknown quantization 'fp4'; choose from: none, int8, binary"):
        ExactDenseIndex(quantization="fp4")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_index(tmp_path / "nope")
    idx.save(tmp_path / "ix")
    with pytest.raises(CheckpointError, match="holds a 'dense-exact' index, not 'dense-hnsw'"):
        HNSWIndex.load(tmp_path / "ix")


def test_fewer_docs_than_k():
    idx = ExactDenseIndex()
    idx.add(["a", "b", "c"], clustered(3, 8, seed=1))
    idx.delete(["b"])
    hits = idx.search(clustered(2, 8, seed=2), k=10)
    assert [sorted(r) for r in hits.ids] == [["a", "c"], ["a", "c"]]
