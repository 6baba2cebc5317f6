"""Helpers shared by the index tests: random but text-like data (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest

from embforge.index import load_index
from embforge.index import storage as storage_mod
from embforge.types import SparseVectors


def clustered(n: int, d: int, seed: int, n_clusters: int = 40, spread: float = 0.7) -> np.ndarray:
    """Unit vectors around random cluster centres (embeddings of text are clustered, not uniform)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_sparse(n: int, vocab: int, seed: int, max_terms: int = 30) -> SparseVectors:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(vocab, int(rng.integers(1, max_terms)), replace=False)
        rows.append({int(a): float(w) for a, w in zip(t, rng.random(len(t)) + 0.01)})
    return SparseVectors.from_dicts(rows, vocab)


def random_multivector(n: int, m: int, seed: int, max_tokens: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((int(rng.integers(1, max_tokens)), m))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def topical_docs(n: int, m: int, seed: int, n_topics: int = 24) -> list[np.ndarray]:
    """Unit-norm multi-vector documents whose tokens come from two of a few topics each (text-like)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((n_topics, m))
    out = []
    for _ in range(n):
        topics = rng.choice(n_topics, 2, replace=False)
        t = int(rng.integers(3, 16))
        x = centres[rng.choice(topics, t)] + 0.6 * rng.standard_normal((t, m))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


def recall(got: list[list[str]], ref: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ref)]))


def check_plaid_save_crash(idx, ids, docs, queries, first: int, path, monkeypatch) -> None:
    """Save ``idx`` holding ``first`` documents, add the rest, make the codes write fail (disk full)
    during the second save, and check that the folder still loads as the first save with the same
    answers: a PLAID index is never half-written."""
    idx.add(ids[:first], docs[:first])
    idx.save(path)
    before = load_index(path).search(queries, k=5)
    idx.add(ids[first:], docs[first:])
    real = storage_mod.save_array

    def dies(d, name, a):
        if name.startswith("plaid_codes"):
            raise OSError("disk full")
        real(d, name, a)

    monkeypatch.setattr("embforge.index.plaid.save_array", dies)
    with pytest.raises(OSError, match="disk full"):
        idx.save(path)
    after = load_index(path)
    assert len(after) == first and after.search(queries, k=5).ids == before.ids
