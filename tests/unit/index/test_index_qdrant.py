"""QdrantIndex (embedded Qdrant) against HybridIndex over the same vectors: same top-10 ids and
scores (ties aside) for dense, sparse, multi-vector re-rank and the weighted hybrid; idempotent
ingest; save / load_index."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.index import HybridIndex, MultiVectorIndex, SparseIndex, load_index
from embforge.index.dense import ExactDenseIndex
from embforge.types import Embeddings, Hits, SparseVectors
from helpers.requires import require_module

HEADS = ("dense", "sparse", "multivector")
TOL = 1e-4


def _emb(n: int, seed: int) -> Embeddings:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, 16)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    rows = [
        {int(t): float(rng.random()) + 0.05 for t in rng.choice(40, size=2 + i % 6, replace=False)}
        for i in range(n)
    ]
    mv = []
    for i in range(n):
        m = rng.standard_normal((2 + i % 7, 8)).astype(np.float32)
        mv.append((m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float16).astype(np.float32))
    return Embeddings(dense=dense, sparse=SparseVectors.from_dicts(rows, 40), multivector=mv)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    require_module("qdrant_client", "pip install 'embforge[qdrant]'")
    from embforge.index.qdrant import QdrantIndex

    docs, queries = _emb(80, 0), _emb(4, 1)
    ids = [f"doc-{i}" for i in range(80)]
    hybrid = HybridIndex(ExactDenseIndex(), SparseIndex(), MultiVectorIndex(), candidates=30)
    hybrid.add(ids, docs)
    d = tmp_path_factory.mktemp("qdrant")
    q = QdrantIndex.open(d, heads=HEADS, candidates=30, batch_size=32)
    q.add(ids, docs, [{"title": f"t{i}", "text": f"text {i}"} for i in range(80)])
    q.save(d)
    return hybrid, q, queries, d


def assert_same_hits(a: Hits, b: Hits) -> None:
    """Same fused scores rank by rank; same ids except inside groups of tied scores."""
    for ia, ib, sa, sb in zip(a.ids, b.ids, a.scores, b.scores):
        assert len(ia) == len(ib)
        np.testing.assert_allclose(sa, sb, atol=TOL)
        cut = sa[-1] + TOL  # ids above the last score's tie group must match exactly
        assert {i for i, s in zip(ia, sa) if s > cut} == {i for i, s in zip(ib, sb) if s > cut}
        for j, (x, y) in enumerate(zip(ia, ib)):
            tied = any(abs(sa[j] - sa[t]) <= TOL for t in range(len(sa)) if t != j)
            if not tied:
                assert x == y
    for h in a.per_head:  # every head's exact score of each common hit
        for ia, ib, pa, pb in zip(a.ids, b.ids, a.per_head[h], b.per_head[h]):
            sb = dict(zip(ib, pb))
            for i, s in zip(ia, pa):
                if i in sb:
                    assert s == pytest.approx(sb[i], abs=TOL), (h, i)


@pytest.mark.parametrize(
    "kw",
    [
        {"weights": (1.0, 0.0, 0.0)},  # dense
        {"weights": (0.0, 1.0, 0.0)},  # sparse
        {"weights": (0.0, 0.0, 1.0)},  # multi-vector re-rank of the dense+sparse candidates
        {},  # the weighted hybrid 1/0.3/1
        {"fusion": "rrf"},
        {"fusion": "minmax"},
        {"fusion": "zscore"},
    ],
    ids=["dense", "sparse", "multivector-rerank", "weighted-hybrid", "rrf", "minmax", "zscore"],
)
def test_same_top10_as_hybrid_index(data, kw):
    hybrid, q, queries, _ = data
    a, b = hybrid.search(queries, k=10, **kw), q.search(queries, k=10, **kw)
    assert set(b.per_head) == set(HEADS)
    assert_same_hits(a, b)


def test_reingest_keeps_the_count_and_load_index_opens_it(data):
    hybrid, q, queries, d = data
    assert len(q) == 80
    q.add(
        ["doc-0", "doc-1"],
        Embeddings(
            dense=hybrid.components["dense"].vectors[:2].copy(),
            sparse=SparseVectors.from_dicts([{1: 0.5}, {2: 0.5}], 40),
            multivector=[np.ones((2, 8), np.float32) / np.sqrt(8)] * 2,
        ),
    )
    assert len(q) == 80  # point ids come from document ids: an upsert, not a duplicate
    loaded = load_index(d)
    assert loaded.kind == "qdrant" and len(loaded) == 80 and loaded.heads == HEADS
    assert loaded.search(queries, k=3).ids[0]
    assert q.delete(["doc-5", "nope"]) == 1 and len(q) == 79


@pytest.mark.parametrize("fusion", ["rrf", "weighted", "zscore"])
def test_exact_duplicates_tie_the_same_way_as_hybrid_index(tmp_path, fusion):
    """Ten documents stored twice under other ids: every head ties them exactly, so rank-based
    fusion (RRF's shared competition ranks) and the candidate cut-off meet real ties; the fused
    scores must still agree rank by rank and the ids up to the tied pairs."""
    require_module("qdrant_client", "pip install 'embforge[qdrant]'")
    from embforge.index.qdrant import QdrantIndex

    base = _emb(40, 3)
    dup = Embeddings(
        dense=np.concatenate([base.dense, base.dense[:10]]),
        sparse=SparseVectors.from_dicts(base.sparse.to_dicts() + base.sparse.to_dicts()[:10], 40),
        multivector=list(base.multivector) + list(base.multivector[:10]),
    )
    ids = [f"doc-{i}" for i in range(50)]
    hybrid = HybridIndex(ExactDenseIndex(), SparseIndex(), MultiVectorIndex(), candidates=12)
    hybrid.add(ids, dup)
    q = QdrantIndex.open(tmp_path, heads=HEADS, candidates=12, batch_size=16)
    q.add(ids, dup, [{"title": "", "text": i} for i in ids])
    queries = Embeddings(
        dense=base.dense[:5].copy(),
        sparse=SparseVectors.from_dicts(base.sparse.to_dicts()[:5], 40),
        multivector=list(base.multivector[:5]),
    )
    a, b = hybrid.search(queries, k=10, fusion=fusion), q.search(queries, k=10, fusion=fusion)

    def canon(i: str) -> str:  # a copy stands for its original: the two are interchangeable
        return f"doc-{int(i.split('-')[1]) % 40}"

    for i, (ia, ib, sa, sb) in enumerate(zip(a.ids, b.ids, a.scores, b.scores)):
        np.testing.assert_allclose(sa, sb, atol=TOL)  # the fused scores agree rank by rank
        cut = sa[-1] + TOL  # which copy survives a candidate cut-off tie may differ; the scores may not
        assert sorted(canon(x) for x, s in zip(ia, sa) if s > cut) == sorted(
            canon(x) for x, s in zip(ib, sb) if s > cut
        )
        assert canon(ia[0]) == canon(ib[0]) == f"doc-{i}"  # the query's own document leads
