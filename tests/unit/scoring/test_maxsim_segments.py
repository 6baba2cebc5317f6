"""The segment MaxSim re-rank (one gather, one batched product, one segment max) == the definition.

Edge cases the layout could get wrong: documents of 1 token and of 0 tokens, candidates that
are -1, a query whose candidate list is empty, all-negative similarities (a spare slot of the
layout must never win a max), query blocks of every size, float16 and int8 storage. The
document-major form (``maxsim_by_document``, chosen when documents recur in many candidate
lists) is held to the same definition.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embforge.index import MultiVectorIndex
from embforge.scoring import (
    DOC_MAJOR_PAIRS,
    maxsim_by_document,
    maxsim_rerank_rows,
    maxsim_segments,
    segment_token_index,
    stack_tokens,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def brute(q: np.ndarray, d: np.ndarray) -> float:
    """s_mul(q, d) = mean over query tokens of the best document token (0 without tokens)."""
    if len(q) == 0 or len(d) == 0:
        return 0.0
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).mean())


def reference(q, rows, docs) -> np.ndarray:
    return np.array([[brute(a, docs[r]) if r >= 0 else np.nan for r in row] for a, row in zip(q, rows)])


def test_segment_layout_points_every_candidate_at_its_own_tokens():
    off = np.array([0, 2, 2, 5])  # doc 1 has no tokens
    src, bounds, lens = segment_token_index(np.array([[2, -1, 0], [1, 1, 0]]), off)
    width = len(src) // 2
    assert lens.tolist() == [[3, 0, 2], [0, 0, 2]]
    assert (np.diff(bounds, axis=1) == lens).all() and (np.diff(bounds.ravel()) >= 0).all()
    assert src[bounds[0, 0] : bounds[0, 1]].tolist() == [2, 3, 4]
    assert src[bounds[0, 2] : bounds[0, 3]].tolist() == [0, 1]
    assert src[bounds[1, 2] : bounds[1, 3]].tolist() == [0, 1]
    assert bounds[0, -1] < width and bounds[1, 0] == width  # a spare slot ends every query


def test_one_token_documents_and_negative_similarities_match_the_definition(rng):
    docs = [-np.abs(rng.normal(size=(1, 6))).astype(np.float32) for _ in range(20)]  # 1 token each
    q = [np.abs(rng.normal(size=(int(n), 6))).astype(np.float32) for n in (1, 3, 5)]  # every sim < 0
    tok, off = stack_tokens(docs)
    rows = rng.integers(0, 20, size=(3, 7))
    for block in (1, 50, 10**9):
        np.testing.assert_allclose(
            maxsim_rerank_rows(q, rows, tok, off, block=block), reference(q, rows, docs), rtol=1e-5, atol=1e-6
        )


def test_empty_candidate_sets(rng):
    docs = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(5)]
    tok, off = stack_tokens(docs)
    q = [rng.normal(size=(2, 4)).astype(np.float32) for _ in range(3)]
    assert maxsim_rerank_rows(q, np.zeros((3, 0), np.int64), tok, off).shape == (3, 0)
    rows = np.array([[-1, -1], [0, 4], [-1, -1]])  # queries 0 and 2 have no candidate
    got = maxsim_rerank_rows(q, rows, tok, off)
    assert np.isnan(got[[0, 2]]).all()
    np.testing.assert_allclose(got[1], [brute(q[1], docs[0]), brute(q[1], docs[4])], rtol=1e-5)
    assert maxsim_segments(
        np.zeros((0, 2, 4), np.float32),
        np.zeros(0),
        np.zeros((0, 4)),
        np.zeros((0, 1), np.int64),
        np.zeros((0, 0)),
    ).shape == (0, 0)


def test_a_store_without_any_token_scores_every_candidate_zero(rng):
    """Every document empty: the token store has 0 rows (found by hypothesis: the gather of the
    spare slot 0 used to raise IndexError)."""
    q = [rng.normal(size=(2, 3)).astype(np.float32)]
    got = maxsim_rerank_rows(q, np.array([[0, -1, 1]]), np.zeros((0, 3), np.float32), np.zeros(3, np.int64))
    assert got[0, 0] == 0.0 and np.isnan(got[0, 1]) and got[0, 2] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    lens=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    qlens=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    c=st.integers(0, 6),
    block=st.sampled_from([1, 64, 10**9]),
    seed=st.integers(0, 2**16),
)
def test_property_equals_brute_force(lens, qlens, c, block, seed):
    rng = np.random.default_rng(seed)
    docs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lens]
    q = [rng.normal(size=(n, 3)).astype(np.float32) for n in qlens]
    tok, off = stack_tokens(docs)
    rows = rng.integers(-1, len(docs), size=(len(q), c))
    got = maxsim_rerank_rows(q, rows, tok, off, block=block)
    np.testing.assert_allclose(got, reference(q, rows, docs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "int8", "float32"])
def test_index_rerank_from_memory_map_equals_its_decoded_brute_force(rng, tmp_path, dtype):
    """MultiVectorIndex.score_rows from the memory-mapped store == the definition on the stored
    (decoded) vectors, and == its own brute-force search scores."""
    docs = [rng.normal(size=(int(n), 8)).astype(np.float32) for n in rng.integers(1, 9, size=40)]
    q = [rng.normal(size=(4, 8)).astype(np.float32) for _ in range(6)]
    idx = MultiVectorIndex(dtype=dtype)
    idx.add([str(i) for i in range(40)], docs)
    idx.save(tmp_path / "mv")
    loaded = MultiVectorIndex.load(tmp_path / "mv")
    assert isinstance(loaded.store[0], np.memmap)
    stored = [loaded.doc_vectors(r) for r in range(40)]
    rows = rng.integers(-1, 40, size=(6, 12))
    got = loaded.score_rows(q, rows)
    np.testing.assert_allclose(got, reference(q, rows, stored), rtol=1e-4, atol=1e-5)
    top_rows, top_vals = loaded.search_rows(q, 5)
    np.testing.assert_allclose(loaded.score_rows(q, top_rows), top_vals, rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    lens=st.lists(st.integers(0, 6), min_size=1, max_size=8),
    qlens=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    c=st.integers(0, 6),
    workers=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_property_document_major_equals_brute_force(lens, qlens, c, workers, seed):
    """Empty documents and queries, -1 candidates, repeats of one document in a list, negative sims."""
    rng = np.random.default_rng(seed)
    docs = [rng.normal(size=(n, 3)).astype(np.float32) for n in lens]
    q = [rng.normal(size=(n, 3)).astype(np.float32) for n in qlens]
    tok, off = stack_tokens(docs)
    rows = rng.integers(-1, len(docs), size=(len(q), c))
    got = maxsim_by_document(q, rows, tok, off, workers=workers)
    np.testing.assert_allclose(got, reference(q, rows, docs), rtol=1e-5, atol=1e-5)


def test_rerank_rows_goes_document_major_when_documents_recur(rng, monkeypatch):
    """Many queries over few documents (evaluation on a small corpus): the dispatch picks the
    document-major form, and both forms give the definition's scores (float16 and int8 storage)."""
    docs = [rng.normal(size=(int(n), 8)).astype(np.float32) for n in rng.integers(0, 12, size=6)]
    q = [rng.normal(size=(int(n), 8)).astype(np.float32) for n in rng.integers(1, 6, size=40)]
    rows = rng.integers(-1, 6, size=(40, 5))
    assert (rows >= 0).sum() >= DOC_MAJOR_PAIRS * len(np.unique(rows[rows >= 0]))
    called = []
    import embforge.scoring.maxsim as mx

    real = mx.maxsim_by_document
    monkeypatch.setattr(mx, "maxsim_by_document", lambda *a, **k: called.append(1) or real(*a, **k))
    for dtype in ("float16", "int8"):
        idx = MultiVectorIndex(dtype=dtype)
        idx.add([str(i) for i in range(6)], docs)
        stored = [idx.doc_vectors(r) for r in range(6)]
        v, sc, off = idx.store
        want = reference(q, rows, stored)
        np.testing.assert_allclose(idx.score_rows(q, rows), want, rtol=1e-4, atol=1e-5)
        few = maxsim_rerank_rows(q[:2], rows[:2], v, off, sc)  # 2 queries: query-major
        np.testing.assert_allclose(few, want[:2], rtol=1e-4, atol=1e-5)
    assert len(called) == 2


@settings(max_examples=30, deadline=None)
@given(
    lens=st.lists(st.integers(0, 6), min_size=1, max_size=12),
    qlens=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    c=st.integers(0, 6),
    seed=st.integers(0, 2**16),
)
def test_property_numba_float16_kernel_equals_brute_force(lens, qlens, c, seed):
    """The numba kernel over float16 storage (what "auto" runs for a float16 store) == the
    definition on the stored values, and == the segment kernel on the same store."""
    rng = np.random.default_rng(seed)
    docs = [rng.normal(size=(n, 3)).astype(np.float16) for n in lens]
    q = [rng.normal(size=(n, 3)).astype(np.float32) for n in qlens]
    tok, off = stack_tokens(docs)
    tok = tok.astype(np.float16)
    rows = rng.integers(-1, len(docs), size=(len(q), c))
    want = reference(q, rows, [d.astype(np.float32) for d in docs])
    got = maxsim_rerank_rows(q, rows, tok, off, kernel="numba")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    seg = maxsim_rerank_rows(q, rows, tok, off, kernel="segments")
    np.testing.assert_allclose(got, seg, rtol=1e-5, atol=1e-5)


def test_kernel_choice_errors(rng):
    docs = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3)]
    tok, off = stack_tokens(docs)
    q = [rng.normal(size=(2, 3)).astype(np.float32)]
    with pytest.raises(ValueError, match="float16"):
        maxsim_rerank_rows(q, np.array([[0, 1]]), tok, off, kernel="numba")
    with pytest.raises(ValueError, match="choose from"):
        maxsim_rerank_rows(q, np.array([[0, 1]]), tok, off, kernel="fast")
    with pytest.raises(IndexError):
        maxsim_rerank_rows(q, np.array([[0, 7]]), tok.astype(np.float16), off)
