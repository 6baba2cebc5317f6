"""BM25 baseline over a subword tokenizer's token ids (bm25s, numba backend).

The papers' BM25 baseline uses the model's own tokenizer (BGE-M3: "BM25 on the
XLM-R tokenizer"); ``term_counts`` turns texts into per-document token counts
with any HF tokenizer, and ``BM25Index`` scores them with bm25s itself.
``bm25_weights`` turns the same counts into BM25 document term weights, so that
``SparseIndex`` with query counts as weights reproduces bm25s's scores exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, IdMap, check_k, hits_from_rows
from embforge.index.storage import (
    check_array,
    check_bounds,
    check_offsets,
    load_array,
    save_array,
    write_manifest,
)
from embforge.types import Hits, SparseVectors

__all__ = ["BM25Index", "term_counts", "bm25_weights", "counts_from_ids"]


def counts_from_ids(token_ids: Sequence[Sequence[int]], vocab_size: int) -> SparseVectors:
    """Per-text term counts (values = occurrences) from token id lists."""
    indptr = np.zeros(len(token_ids) + 1, np.int64)
    idx_parts, cnt_parts = [], []
    for i, ids in enumerate(token_ids):
        u, c = np.unique(np.asarray(ids, np.int64), return_counts=True)
        if len(u) and (u[0] < 0 or u[-1] >= vocab_size):
            raise DataError(f"text {i} has token ids outside [0, vocab_size={vocab_size})")
        idx_parts.append(u.astype(np.int32))
        cnt_parts.append(c.astype(np.float32))
        indptr[i + 1] = indptr[i] + len(u)
    indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32)
    values = np.concatenate(cnt_parts) if cnt_parts else np.zeros(0, np.float32)
    return SparseVectors(indptr, indices, values, vocab_size)


def term_counts(tokenizer: Any, texts: Sequence[str], max_length: int | None = None) -> SparseVectors:
    """Token counts of ``texts`` under an HF tokenizer, special tokens excluded."""
    enc = tokenizer(
        list(texts),
        add_special_tokens=False,
        truncation=max_length is not None,
        max_length=max_length,
    )["input_ids"]
    return counts_from_ids(enc, len(tokenizer))


def bm25_weights(counts: SparseVectors, k1: float = 1.5, b: float = 0.75) -> SparseVectors:
    """Lucene BM25 document term weights ``idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))``
    with ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` (bm25s's default "lucene" variant)."""
    n = len(counts)
    indptr = np.asarray(counts.indptr)
    tf = np.asarray(counts.values, np.float64)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    dl = np.add.reduceat(tf, indptr[:-1]) if len(tf) else np.zeros(n)
    dl = np.where(np.diff(indptr) > 0, dl, 0.0)
    avgdl = dl.mean() if n else 1.0
    df = np.bincount(counts.indices, minlength=counts.vocab_size).astype(np.float64)
    idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    w = idf[counts.indices] * tf / (tf + k1 * (1 - b + b * dl[rows] / avgdl))
    return SparseVectors(
        indptr.copy(), np.asarray(counts.indices).copy(), w.astype(np.float32), counts.vocab_size
    )


@INDEXES.register("bm25")
class BM25Index(BaseIndex):
    """BM25 (bm25s, numba backend) over token ids, with the Index protocol.

    ``add``/``search`` take ``SparseVectors`` of term counts (``term_counts``) or
    lists of token ids. Adds and deletes mark the bm25s index stale; it is rebuilt
    over the live documents (exact BM25 statistics) at the next search.

    Args:
        k1, b: BM25 parameters; method: bm25s variant ("lucene", "robertson", "atire", "bm25l", "bm25+").
        backend: bm25s backend ("numba" or "numpy").
        n_threads: retrieval threads for bm25s.
    """

    kind = "bm25"
    heads = ("sparse",)

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        backend: str = "numba",
        n_threads: int = 2,
    ) -> None:
        super().__init__()
        if backend not in ("numba", "numpy"):
            raise ConfigError(f"unknown bm25s backend {backend!r}; choose from: numba, numpy")
        self.k1, self.b, self.method, self.backend, self.n_threads = (
            float(k1),
            float(b),
            method,
            backend,
            int(n_threads),
        )
        self._counts: list[SparseVectors] = []
        self._bm25: Any = None  # a bm25s.BM25 (bm25s ships no type stubs)
        self._live_rows: np.ndarray | None = None
        self._vocab: dict[int, int] = {}
        self.vocab_size = 0

    def _as_counts(self, x: Any) -> SparseVectors:
        if isinstance(x, SparseVectors):
            return x
        return counts_from_ids(x, max(self.vocab_size, 1 + max((max(t) for t in x if len(t)), default=0)))

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Add (or replace) documents given as term counts or token id lists."""
        c = self._as_counts(vectors)
        ids = self.idmap.check_new(ids, len(c), "documents")
        self.vocab_size = max(self.vocab_size, c.vocab_size)
        self.idmap.append(ids)
        self._counts.append(c)
        self._bm25 = None

    def delete(self, ids: Sequence[str]) -> int:
        n = super().delete(ids)
        if n:
            self._bm25 = None
        return n

    @property
    def counts(self) -> SparseVectors:
        """Term counts of every row (dead rows included)."""
        if len(self._counts) > 1:
            parts = self._counts
            indptr = [np.zeros(1, np.int64)]
            off = 0
            for p in parts:
                indptr.append(np.asarray(p.indptr[1:], np.int64) + off)
                off += int(p.indptr[-1])
            self._counts = [
                SparseVectors(
                    np.concatenate(indptr),
                    np.concatenate([np.asarray(p.indices) for p in parts]),
                    np.concatenate([np.asarray(p.values) for p in parts]),
                    self.vocab_size,
                )
            ]
        return (
            self._counts[0]
            if self._counts
            else SparseVectors(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), 0)
        )

    def _build(self) -> None:
        import bm25s

        c = self.counts
        live = np.flatnonzero(self.idmap.alive)
        terms = np.unique(np.asarray(c.indices)) if len(c.indices) else np.zeros(0, np.int64)
        self._vocab = {int(t): j for j, t in enumerate(terms)}
        empty = len(terms)  # bm25s's "" token for documents/queries without known terms
        docs = []
        for r in live:
            a, b = int(c.indptr[r]), int(c.indptr[r + 1])
            d = np.repeat(np.searchsorted(terms, c.indices[a:b]), c.values[a:b].astype(np.int64)).tolist()
            docs.append(d)
        vocab = {str(int(t)): j for j, t in enumerate(terms)}
        vocab[""] = empty
        retriever = bm25s.BM25(k1=self.k1, b=self.b, method=self.method, backend=self.backend)
        retriever.index(bm25s.tokenization.Tokenized(ids=docs, vocab=vocab), show_progress=False)
        self._bm25, self._live_rows = retriever, live

    def _query_ids(self, queries: Any) -> list[list[int]]:
        if isinstance(queries, SparseVectors):
            out = []
            for i in range(len(queries)):
                a, b = int(queries.indptr[i]), int(queries.indptr[i + 1])
                out.append(np.repeat(queries.indices[a:b], queries.values[a:b].astype(np.int64)).tolist())
            queries = out
        return [[self._vocab[t] for t in q if t in self._vocab] for q in queries]

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        if self._bm25 is None:
            self._build()
        live_rows = self._live_rows
        if live_rows is None:
            raise RuntimeError("BM25Index: the bm25s index was built without its live rows")
        qids = self._query_ids(queries)
        n_live = len(live_rows)
        if n_live == 0:
            return np.full((len(qids), 0), -1, np.int64), np.zeros((len(qids), 0), np.float32)
        kk = min(k, n_live)
        empty = len(self._vocab)
        qids = [q if q else [empty] for q in qids]
        res = self._bm25.retrieve(qids, k=kk, show_progress=False, n_threads=self.n_threads)
        rows = live_rows[np.asarray(res.documents, np.int64)]
        return rows, np.asarray(res.scores, np.float32)

    def search(self, queries: Any, k: int = 10) -> Hits:
        """Top-``k`` documents by BM25 for queries given as term counts or token id lists."""
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, rows, vals)

    def compact(self) -> None:
        keep = np.flatnonzero(self.idmap.alive)
        c = self.counts
        m = c.to_scipy()[keep] if len(keep) else None
        self.idmap = IdMap([self.idmap.ids[r] for r in keep])
        self._counts = (
            []
            if m is None
            else [
                SparseVectors(
                    m.indptr.astype(np.int64),
                    m.indices.astype(np.int32),
                    m.data.astype(np.float32),
                    self.vocab_size,
                )
            ]
        )
        self._bm25 = None

    def config(self) -> dict[str, Any]:
        return {
            "k1": self.k1,
            "b": self.b,
            "method": self.method,
            "backend": self.backend,
            "n_threads": self.n_threads,
        }

    def _write(self, d: Path) -> None:
        c = self.counts
        save_array(d, "indptr", c.indptr)
        save_array(d, "indices", c.indices)
        save_array(d, "counts", c.values)
        self.idmap.save(d)
        write_manifest(d, self.kind, self.config(), vocab_size=self.vocab_size, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> BM25Index:
        idx = cls._from_config(d, manifest)
        idx.idmap = IdMap.load(d)
        vocab = manifest.get("vocab_size") or 0
        if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 0:
            raise CheckpointError(f"{d / 'index.json'}: vocab_size must be a non-negative integer, got {vocab!r}")
        idx.vocab_size = vocab
        indptr, indices, counts = (np.asarray(load_array(d, n, mmap)) for n in ("indptr", "indices", "counts"))
        check_offsets(d, "indptr", indptr, idx.idmap.n_rows, len(indices))
        check_bounds(d, "indices", indices, vocab)
        check_array(d, "counts", counts, "fiu", 1, len(indices))
        idx._counts = [SparseVectors(indptr, indices, counts, idx.vocab_size)]
        return idx
