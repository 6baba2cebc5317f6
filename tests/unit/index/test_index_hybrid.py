from __future__ import annotations

import numpy as np
import pytest
import torch

from embforge.errors import ConfigError
from embforge.index import ExactDenseIndex, HNSWIndex, MultiVectorIndex, SparseIndex, load_index
from embforge.scoring import (
    dense_scores,
    hybrid_scores,
    multivector_list_scores,
    sparse_vector_scores,
)
from embforge.search import HybridIndex, rrf
from embforge.types import Embeddings


def reference_scores(q: Embeddings, d: Embeddings):
    """Per-head (Q, N) scores from the foundation's torch scoring functions (embforge.scoring)."""
    dense = dense_scores(torch.from_numpy(q.dense), torch.from_numpy(d.dense)).numpy()
    lex = sparse_vector_scores(q.sparse, d.sparse)
    mul = multivector_list_scores(q.multivector, d.multivector)
    return dense, lex, mul


def make(docs, doc_ids, **kw):
    idx = HybridIndex(
        dense=ExactDenseIndex(), sparse=SparseIndex(), multivector=MultiVectorIndex(dtype="float32"), **kw
    )
    idx.add(doc_ids, docs)
    return idx


@pytest.mark.parity
def test_weighted_rerank_equals_reference(docs, queries, doc_ids):
    idx = make(docs, doc_ids, candidates=600)  # candidates = whole corpus -> exact hybrid ranking
    hits = idx.search(queries, k=10)
    dense, lex, mul = reference_scores(queries, docs)
    fused = hybrid_scores(dense, lex, mul)  # BGE-M3 weights (1, 0.3, 1)
    for i in range(len(queries)):
        order = np.argsort(-fused[i], kind="stable")[:10]
        assert hits.ids[i] == [doc_ids[j] for j in order]
        np.testing.assert_allclose(hits.scores[i], fused[i, order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hits.per_head["dense"][i], dense[i, order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hits.per_head["sparse"][i], lex[i, order], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(hits.per_head["multivector"][i], mul[i, order], rtol=1e-5, atol=1e-6)


def test_candidates_come_from_dense_and_sparse(docs, queries, doc_ids):
    idx = make(docs, doc_ids, candidates=20)
    hits = idx.search(queries, k=10)
    dense, lex, _ = reference_scores(queries, docs)
    for i in range(len(queries)):
        pool = {doc_ids[j] for j in np.argsort(-dense[i])[:20]} | {
            doc_ids[j] for j in np.argsort(-lex[i])[:20]
        }
        assert set(hits.ids[i]) <= pool
        assert hits.scores[i] == sorted(hits.scores[i], reverse=True)


def test_per_query_weights_and_rrf(docs, queries, doc_ids):
    idx = make(docs, doc_ids, candidates=600)
    dense, lex, mul = reference_scores(queries, docs)
    only = [{"dense": 1, "sparse": 0, "multivector": 0}, {"dense": 0, "sparse": 1, "multivector": 0}] + [
        None
    ] * (len(queries) - 2)
    hits = idx.search(queries, k=5, weights=only)
    assert hits.ids[0] == [doc_ids[j] for j in np.argsort(-dense[0], kind="stable")[:5]]
    assert hits.ids[1] == [doc_ids[j] for j in np.argsort(-lex[1], kind="stable")[:5]]
    default = idx.search(queries, k=5)
    assert hits.ids[2:] == default.ids[2:]
    # RRF over the whole pool = sum over heads of 1 / (60 + rank)
    r = idx.search(queries, k=5, fusion="rrf")
    for i in range(len(queries)):
        fused = rrf(
            {"dense": dense[i], "sparse": lex[i], "multivector": mul[i]},
            dict.fromkeys(("dense", "sparse", "multivector"), 1.0),
        )
        np.testing.assert_allclose(r.scores[i], np.sort(fused)[::-1][:5], rtol=1e-9)
    with pytest.raises(ConfigError, match="unknown fusion 'max'; choose from: minmax, rrf, weighted, zscore"):
        idx.search(queries, k=5, fusion="max")
    with pytest.raises(ConfigError, match="unknown head 'bm25'; heads: dense, sparse, multivector"):
        idx.search(queries, k=5, weights={"bm25": 1.0})
    # one weights rule (embforge.scoring.parse_weights): a head left out weighs 0, FlagEmbedding's
    # names are aliases, so {"sparse": 1} ranks by the lexical score alone
    sparse_only = idx.search(queries, k=5, weights={"sparse": 1.0})
    assert sparse_only.ids[1] == hits.ids[1]
    colbert = idx.search(queries, k=5, weights={"colbert": 1.0})
    assert colbert.ids[0] == [doc_ids[j] for j in np.argsort(-mul[0], kind="stable")[:5]]


@pytest.mark.parametrize("fusion", ["minmax", "zscore"])
def test_normalised_fusions_over_whole_pool(docs, queries, doc_ids, fusion):
    from embforge.scoring import DEFAULT_WEIGHTS, FUSIONS

    idx = make(docs, doc_ids, candidates=600)
    dense, lex, mul = reference_scores(queries, docs)
    r = idx.search(queries, k=5, fusion=fusion)
    for i in range(len(queries)):
        fused = FUSIONS.get(fusion)(
            {"dense": dense[i], "sparse": lex[i], "multivector": mul[i]}, DEFAULT_WEIGHTS
        )
        np.testing.assert_allclose(r.scores[i], np.sort(fused)[::-1][:5], rtol=1e-5, atol=1e-6)


def test_hybrid_save_load_delete(tmp_path, docs, queries, doc_ids):
    idx = HybridIndex(dense=HNSWIndex(), sparse=SparseIndex(), multivector=MultiVectorIndex(), candidates=50)
    idx.add(doc_ids, docs)
    hits = idx.search(queries, k=10)
    idx.save(tmp_path / "hy")
    loaded = load_index(tmp_path / "hy")
    assert isinstance(loaded, HybridIndex) and loaded.heads == ("dense", "sparse", "multivector")
    again = loaded.search(queries, k=10)
    assert again.ids == hits.ids
    np.testing.assert_allclose(again.scores, hits.scores, rtol=1e-6)
    gone = hits.ids[0][0]
    loaded.delete([gone])
    assert gone not in loaded.search(queries, k=10).ids[0] and len(loaded) == len(doc_ids) - 1


def test_multivector_only_hybrid_searches_brute_force(docs, queries, doc_ids):
    idx = HybridIndex(multivector=MultiVectorIndex(dtype="float32"))
    idx.add(doc_ids, Embeddings(multivector=docs.multivector))
    hits = idx.search(Embeddings(multivector=queries.multivector), k=3)
    _, _, mul = reference_scores(queries, docs)
    assert hits.ids[0] == [doc_ids[j] for j in np.argsort(-mul[0], kind="stable")[:3]]


def test_bad_head_in_add_changes_nothing(docs, doc_ids):
    from embforge.errors import DataError
    from embforge.types import SparseVectors

    idx = make(docs, doc_ids)
    bad = Embeddings(
        dense=docs.dense[:2],
        sparse=SparseVectors.from_dicts([{1: 1.0}, {2: 1.0}], vocab_size=7),  # wrong vocabulary
        multivector=docs.multivector[:2],
    )
    with pytest.raises(DataError, match="vocab_size 7 but the index holds vocab_size 300"):
        idx.add(["new1", "new2"], bad)
    assert len(idx) == len(doc_ids)
    assert all(len(c) == len(doc_ids) and "new1" not in c.idmap.row_of for c in idx.components.values())
