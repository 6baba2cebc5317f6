"""The scoring core: every form (torch, numpy, flat, lists, batched re-rank) == brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embforge.scoring import (
    DEFAULT_WEIGHTS,
    FUSIONS,
    dense_scores,
    embedding_scores,
    hybrid_scores,
    lexical_scores,
    maxsim_flat,
    maxsim_rerank,
    maxsim_rerank_rows,
    maxsim_scores,
    minmax_normalize,
    multivector_list_scores,
    pad_multivectors,
    sparse_vector_scores,
    stack_tokens,
    truncate_dense,
    weighted_sum,
    zscore_normalize,
)
from embforge.types import Embeddings, SparseVectors


def brute_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    """The definition, one token pair at a time."""
    if len(q) == 0 or len(d) == 0:
        return 0.0
    return sum(max(float(np.dot(a, b)) for b in d) for a in q) / len(q)


def token_lists(rng: np.random.Generator, n: int, m: int = 8, empty: bool = True) -> list[np.ndarray]:
    lens = rng.integers(0 if empty else 1, 7, size=n)
    return [rng.normal(size=(t, m)).astype(np.float32) for t in lens]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_dense_torch_equals_numpy_equals_brute(rng):
    q, d = rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    brute = np.array([[sum(float(a) * float(b) for a, b in zip(qi, di)) for di in d] for qi in q])
    np.testing.assert_allclose(dense_scores(q, d), brute, atol=1e-5)
    np.testing.assert_allclose(
        dense_scores(torch.from_numpy(q), torch.from_numpy(d)).numpy(), brute, atol=1e-5
    )


def test_lexical_torch_equals_csr_equals_brute(rng):
    qi, di = rng.integers(0, 15, (3, 6)), rng.integers(0, 15, (4, 9))
    qw, dw = rng.random((3, 6)).astype(np.float32), rng.random((4, 9)).astype(np.float32)

    def term_dicts(w, ids):
        out = []
        for r in range(len(ids)):
            t: dict[int, float] = {}
            for i, x in zip(ids[r].tolist(), w[r].tolist()):
                t[i] = max(t.get(i, 0.0), x)
            out.append(dict(sorted(t.items())))
        return out

    qd, dd = term_dicts(qw, qi), term_dicts(dw, di)
    brute = np.array([[sum(w * b[t] for t, w in a.items() if t in b) for b in dd] for a in qd])
    torch_s = lexical_scores(
        torch.from_numpy(qw), torch.from_numpy(qi), torch.from_numpy(dw), torch.from_numpy(di)
    )
    np.testing.assert_allclose(torch_s.numpy(), brute, atol=1e-5)
    csr = sparse_vector_scores(SparseVectors.from_dicts(qd, 15), SparseVectors.from_dicts(dd, 15))
    np.testing.assert_allclose(csr, brute, atol=1e-5)


def test_maxsim_every_form_equals_brute(rng):
    q, d = token_lists(rng, 5), token_lists(rng, 9)
    q[0] = np.zeros((0, 8), np.float32)  # a query without tokens scores 0
    brute = np.array([[brute_maxsim(a, b) for b in d] for a in q])
    qx, qm = pad_multivectors(q)
    dx, dm = pad_multivectors(d)
    np.testing.assert_allclose(maxsim_scores(qx, qm, dx, dm, chunk=2).numpy(), brute, atol=1e-5)
    np.testing.assert_allclose(multivector_list_scores(q, d), brute, atol=1e-5)
    np.testing.assert_allclose(multivector_list_scores(q, d, block=1), brute, atol=1e-5)
    np.testing.assert_allclose(maxsim_flat(*stack_tokens(q), *stack_tokens(d)), brute, atol=1e-5)


def test_maxsim_rerank_equals_brute_for_each_candidate_list(rng):
    q, docs = token_lists(rng, 6, empty=False), token_lists(rng, 30)
    tok, off = stack_tokens(docs)
    cands = [rng.choice(30, size=int(rng.integers(0, 12)), replace=True) for _ in q]

    def gather(rows):
        return np.concatenate([tok[off[r] : off[r + 1]] for r in rows])

    for block in (1, 10_000, 10**9):  # one query per block ... all queries in one block
        got = maxsim_rerank(q, cands, np.diff(off), gather, block=block)
        for a, c, s in zip(q, cands, got):
            np.testing.assert_allclose(s, [brute_maxsim(a, docs[r]) for r in c], atol=1e-5)


def test_maxsim_rerank_rows_from_storage_equals_brute(rng):
    """Padded batched re-rank straight from token storage: -1 rows are nan, empty documents
    and padding score as the definition says, float16 and int8-with-scales storage too."""
    q, docs = token_lists(rng, 7, empty=False), token_lists(rng, 25)  # some documents have no tokens
    tok, off = stack_tokens(docs)
    rows = rng.integers(-1, 25, size=(7, 9))
    ref = np.array([[brute_maxsim(a, docs[r]) if r >= 0 else np.nan for r in row] for a, row in zip(q, rows)])
    for block in (1, 500, 10**9):
        got = maxsim_rerank_rows(q, rows, tok, off, block=block)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(maxsim_rerank_rows(q, rows, tok.astype(np.float16), off), ref, atol=2e-2)
    scale = np.abs(tok).max(axis=1, initial=1e-6) / 127.0
    codes = np.rint(tok / scale[:, None]).astype(np.int8)
    np.testing.assert_allclose(maxsim_rerank_rows(q, rows, codes, off, scale), ref, atol=5e-2)


def test_embedding_scores_dispatch_per_head(rng):
    q = Embeddings(
        dense=rng.normal(size=(2, 4)).astype(np.float32),
        sparse=SparseVectors.from_dicts([{1: 0.5}, {2: 1.0, 3: 2.0}], 5),
        multivector=token_lists(rng, 2, empty=False),
    )
    np.testing.assert_allclose(embedding_scores(q, q, "dense"), q.dense @ q.dense.T, atol=1e-6)
    np.testing.assert_allclose(embedding_scores(q, q, "sparse"), [[0.25, 0.0], [0.0, 5.0]], atol=1e-6)
    np.testing.assert_allclose(
        embedding_scores(q, q, "multivector"), multivector_list_scores(q.multivector, q.multivector)
    )
    with pytest.raises(ValueError, match="unknown head 'colbert'"):
        embedding_scores(q, q, "colbert")


def test_truncate_dense_torch_equals_numpy(rng):
    x = rng.normal(size=(3, 8)).astype(np.float32)
    brute = x[:, :4] / np.sqrt((x[:, :4] ** 2).sum(1, keepdims=True))
    np.testing.assert_allclose(truncate_dense(x, 4), brute, atol=1e-6)
    np.testing.assert_allclose(truncate_dense(torch.from_numpy(x), 4).numpy(), brute, atol=1e-6)
    assert truncate_dense(x, 8) is x and truncate_dense(x, None) is x


def test_weighted_fusion_is_the_hybrid_sum(rng):
    s = {h: rng.normal(size=5) for h in ("dense", "sparse", "multivector")}
    want = s["dense"] + 0.3 * s["sparse"] + s["multivector"]
    np.testing.assert_allclose(weighted_sum(s, DEFAULT_WEIGHTS), want)
    np.testing.assert_allclose(hybrid_scores(s["dense"], s["sparse"], s["multivector"]), want)
    np.testing.assert_allclose(
        hybrid_scores(s["dense"], s["sparse"], s["multivector"], weights=(1, 0.3, 1)), want
    )
    t = hybrid_scores(*(torch.from_numpy(s[h]) for h in ("dense", "sparse", "multivector")))
    np.testing.assert_allclose(t.numpy(), want)
    s["sparse"][2] = np.nan  # no score: counts 0
    assert weighted_sum(s, DEFAULT_WEIGHTS)[2] == pytest.approx(s["dense"][2] + s["multivector"][2])


def test_normalised_fusions_brute():
    s = {"dense": np.array([0.2, 0.4, 0.3, np.nan]), "sparse": np.array([9.0, 3.0, 6.0, 3.0])}
    w = {"dense": 1.0, "sparse": 0.5}
    mm = FUSIONS.get("minmax")(s, w)
    np.testing.assert_allclose(mm, [0.0 + 0.5, 1.0 + 0.0, 0.5 + 0.25, 0.0 + 0.0])
    d = np.array([0.2, 0.4, 0.3])
    sp = s["sparse"]
    want = np.r_[(d - d.mean()) / d.std(), 0.0] + 0.5 * (sp - sp.mean()) / sp.std()
    np.testing.assert_allclose(FUSIONS.get("zscore")(s, w), want)
    assert minmax_normalize(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    assert zscore_normalize(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]


def test_rrf_brute_and_registry_names():
    s = {"dense": np.array([0.9, 0.1, 0.5]), "sparse": np.array([0.0, 2.0, np.nan])}
    want = [1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62]
    np.testing.assert_allclose(FUSIONS.get("rrf")(s, {"dense": 1.0, "sparse": 1.0}), want)
    assert sorted(FUSIONS.names()) == ["minmax", "rrf", "weighted", "zscore"]
