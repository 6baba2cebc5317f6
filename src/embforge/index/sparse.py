"""Inverted index over learned term weights (BGE-M3 lexical head, SPLADE-like).

``s_lex(q, p) = sum over terms t in q and p of w_qt * w_pt`` (BGE-M3, Chen et al., 2024).
Documents are stored twice: forward CSR (rows -> terms, for re-ranking given
candidates) and an inverted CSC (term -> postings, for search). Search walks the
postings of each query term, accumulating into a per-thread score buffer and
keeping only touched documents for the top-k heap (numba, parallel over queries);
a scipy ``Q @ D.T`` backend gives the same results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import (
    INDEXES,
    BaseIndex,
    IdMap,
    as_field,
    check_k,
    check_sparse,
    hits_from_rows,
    topk,
)
from embforge.index.storage import (
    check_array,
    check_bounds,
    check_offsets,
    load_array,
    save_array,
    write_manifest,
)
from embforge.types import Hits, SparseVectors

__all__ = ["SparseIndex", "SPARSE_BACKENDS"]

SPARSE_BACKENDS = ("numba", "scipy")


def _kernel():
    """The numba search kernel (imported on first search; compiled once, cached on disk).

    Lazy on purpose: importing numba costs ~1.5 s, paid only by the numba backend.
    """
    from embforge.index._sparse_kernel import search_kernel  # lazy-import: numba, ~1.5 s, this backend only

    return search_kernel


def _positive(x: SparseVectors, what: str) -> SparseVectors:
    """Drop zero weights (they never score); negative weights are an error (ReLU outputs are >= 0)."""
    v = np.asarray(x.values)
    if (v < 0).any():
        raise DataError(
            f"sparse {what} hold negative weights (min {float(v.min()):.3g}); term weights must be >= 0"
        )
    if (v > 0).all():
        return x
    keep = v > 0
    counts = np.add.reduceat(keep.astype(np.int64), x.indptr[:-1]) if len(v) else np.zeros(len(x), np.int64)
    counts = np.where(np.diff(x.indptr) > 0, counts, 0)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SparseVectors(indptr, np.asarray(x.indices)[keep], v[keep], x.vocab_size)


def _check_queries(q: Any, vocab_size: int | None) -> SparseVectors:
    q = check_sparse(as_field(q, "sparse"), "sparse queries")
    if vocab_size is not None and q.vocab_size != vocab_size:
        raise DataError(
            f"sparse queries have vocab_size {q.vocab_size} but the index was built with vocab_size "
            f"{vocab_size}; encode queries with the same model/tokenizer as the index"
        )
    if len(q.values) and float(np.min(q.values)) < 0:
        raise DataError(
            f"sparse queries hold negative weights (min {float(np.min(q.values)):.3g}); term weights must be >= 0"
        )
    return q


@INDEXES.register("sparse")
class SparseIndex(BaseIndex):
    """Top-k by accumulated term weight over an inverted index.

    Args:
        backend: "numba" (postings walk, parallel over queries) or "scipy" (sparse matmul).
        n_threads: numba threads (0 = numba's default, all cores).

    Example:
        >>> from embforge.types import SparseVectors
        >>> docs = SparseVectors.from_dicts([{1: 0.5, 2: 1.0}, {2: 0.2}], vocab_size=4)
        >>> idx = SparseIndex(); idx.add(["a", "b"], docs)
        >>> idx.search(SparseVectors.from_dicts([{2: 1.0}], vocab_size=4), k=2).ids
        [['a', 'b']]
    """

    kind = "sparse"
    heads = ("sparse",)

    def __init__(self, backend: str = "numba", n_threads: int = 0) -> None:
        super().__init__()
        if backend not in SPARSE_BACKENDS:
            raise ConfigError(
                f"unknown sparse backend {backend!r}; choose from: {', '.join(SPARSE_BACKENDS)}"
            )
        self.backend = backend
        self.n_threads = int(n_threads)
        self.vocab_size: int | None = None
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pending: list[SparseVectors] = []
        self._csc: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # ---- data ---------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Add (or replace) documents: ``SparseVectors`` or Embeddings with a sparse head."""
        self.commit(*self.prepare(ids, vectors))

    def prepare(self, ids: Sequence[str], vectors: Any) -> tuple[list[str], SparseVectors]:
        """Validate an ``add`` without changing the index (``commit`` applies it)."""
        x = check_sparse(as_field(vectors, "sparse"), "sparse documents")
        if self.vocab_size is not None and x.vocab_size != self.vocab_size:
            raise DataError(
                f"sparse documents have vocab_size {x.vocab_size} but the index holds vocab_size "
                f"{self.vocab_size}; encode every document with the same model/tokenizer"
            )
        ids = self.idmap.check_new(ids, len(x), "sparse vectors")
        if len(x.indices) and (int(x.indices.min()) < 0 or int(x.indices.max()) >= x.vocab_size):
            raise DataError(f"sparse documents hold term ids outside [0, vocab_size={x.vocab_size})")
        return ids, _positive(x, "documents")

    def commit(self, ids: list[str], x: SparseVectors) -> None:
        self.vocab_size = x.vocab_size
        self.idmap.append(ids)
        self._pending.append(x)
        self._csc = None

    @property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward matrix (indptr (rows+1,), indices (nnz,), values (nnz,)) of all rows."""
        if self._pending:
            parts = ([self._csr] if self._csr is not None else []) + [
                (p.indptr, p.indices, p.values) for p in self._pending
            ]
            indptr = [np.zeros(1, np.int64)]
            off = 0
            for ip, _, _ in parts:
                indptr.append(np.asarray(ip[1:], np.int64) - int(ip[0]) + off)
                off += int(ip[-1]) - int(ip[0])
            self._csr = (
                np.concatenate(indptr),
                np.concatenate([np.asarray(ix, np.int32) for _, ix, _ in parts]),
                np.concatenate([np.asarray(v, np.float32) for _, _, v in parts]),
            )
            self._pending = []
        if self._csr is None:
            return np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        return self._csr

    def _matrix(self):
        import scipy.sparse as sp  # lazy: ~1 s to import, only the scipy paths need it

        indptr, indices, values = self.csr
        return sp.csr_matrix((values, indices, indptr), shape=(self.idmap.n_rows, self.vocab_size or 0))

    @property
    def csc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Inverted index (col_ptr (V+1,), doc_rows (nnz,) int32, weights (nnz,) float32)."""
        if self._csc is None or self._pending:
            m = self._matrix().tocsc()
            m.sort_indices()
            self._csc = (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32))
        return self._csc

    # ---- search -------------------------------------------------------------------
    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = _check_queries(queries, self.vocab_size)
        n = self.idmap.n_rows
        if n == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        k = min(k, n)
        if self.backend == "scipy":
            return self._search_scipy(q, k)
        return self._search_numba(q, k)

    def _search_numba(self, q: SparseVectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        import numba  # lazy: ~1.5 s to import, only this backend needs it

        kernel = _kernel()
        col_ptr, rows, weights = self.csc
        old = numba.get_num_threads()
        if self.n_threads:
            cap = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # numba.config sets it at import
            numba.set_num_threads(min(self.n_threads, cap))
        try:
            n_chunks = max(1, min(len(q), 4 * numba.get_num_threads()))
            return kernel(
                np.asarray(q.indptr, np.int64),
                np.asarray(q.indices, np.int64),
                np.asarray(q.values, np.float32),
                col_ptr,
                rows,
                weights,
                self.idmap.alive,
                self.idmap.n_rows,
                k,
                n_chunks,
            )
        finally:
            numba.set_num_threads(old)

    def _search_scipy(self, q: SparseVectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        import scipy.sparse as sp

        qm = sp.csr_matrix(
            (np.asarray(q.values, np.float32), q.indices, q.indptr), shape=(len(q), self.vocab_size)
        )
        col_ptr, rows, weights = self.csc
        dt = sp.csr_matrix((weights, rows, col_ptr), shape=(self.vocab_size, self.idmap.n_rows))  # D^T
        s = (qm @ dt).tocsr()
        out_r = np.full((len(q), k), -1, np.int64)
        out_v = np.full((len(q), k), -np.inf, np.float32)
        alive = self.idmap.alive
        for i in range(len(q)):
            a, b = s.indptr[i], s.indptr[i + 1]
            cols, vals = s.indices[a:b], s.data[a:b].astype(np.float32)
            ok = alive[cols]
            cols, vals = cols[ok], vals[ok]
            if len(cols) == 0:
                continue
            order = np.argsort(cols, kind="stable")  # ties -> lower row, like the numba kernel
            cols, vals = cols[order], vals[order]
            sel, v = topk(vals[None, :], k)
            m = sel.shape[1]
            out_r[i, :m] = cols[sel[0]]
            out_v[i, :m] = v[0]
        return out_r, out_v

    def search(self, queries: Any, k: int = 10) -> Hits:
        """Top-``k`` documents by ``sum_t w_qt * w_dt`` for each query."""
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, rows, vals)

    def score_rows(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """(Q, C) lexical scores of query i with document rows ``rows[i]`` (-1 or dead -> nan).

        numba backend: a parallel kernel scatters each query's weights into a vocabulary buffer
        and walks every candidate's forward terms (``_sparse_kernel.score_rows_kernel``).
        scipy backend: vectorised over all (query, candidate) pairs, each candidate's terms
        looked up in its query's sorted terms with one ``searchsorted`` over ``query * V + term`` keys.
        """
        q = _check_queries(queries, self.vocab_size)
        rows = np.asarray(rows, np.int64).reshape(len(q), -1)
        ok = (rows >= 0) & self.idmap.alive[np.maximum(rows, 0)] if self.idmap.n_rows else rows < -1
        if not ok.any():
            return np.full(rows.shape, np.nan, np.float32)
        if self.backend == "numba":
            return self._score_rows_numba(q, rows, ok)
        return self._score_rows_numpy(q, rows, ok)

    def _score_rows_numba(self, q: SparseVectors, rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
        import numba  # lazy: ~1.5 s to import, only this backend needs it

        from embforge.index._sparse_kernel import score_rows_kernel  # lazy-import: numba, this backend only

        indptr, indices, values = self.csr
        n_chunks = max(1, min(len(q), 4 * numba.get_num_threads()))
        return score_rows_kernel(
            np.asarray(q.indptr, np.int64),
            np.asarray(q.indices, np.int64),
            np.asarray(q.values, np.float32),
            np.ascontiguousarray(rows),
            np.ascontiguousarray(ok),
            np.asarray(indptr, np.int64),
            np.asarray(indices, np.int32),
            np.asarray(values, np.float32),
            int(q.vocab_size),
            n_chunks,
        )

    def _score_rows_numpy(self, q: SparseVectors, rows: np.ndarray, ok: np.ndarray) -> np.ndarray:
        nq, c = rows.shape
        out = np.full(rows.shape, np.nan, np.float32)
        indptr, indices, values = self.csr
        indptr, v = np.asarray(indptr), np.int64(q.vocab_size)
        qi = np.repeat(np.arange(nq, dtype=np.int64), np.diff(np.asarray(q.indptr)))
        qkey = qi * v + np.asarray(q.indices, np.int64)
        order = np.argsort(qkey, kind="stable")
        qkey, qw = qkey[order], np.asarray(q.values, np.float32)[order]
        pair = np.flatnonzero(ok.reshape(-1))  # (P,) flat (query, candidate) positions
        r = rows.reshape(-1)[pair]
        starts, lens = indptr[r], indptr[r + 1] - indptr[r]
        seg = np.repeat(np.cumsum(lens) - lens, lens)
        nz = np.repeat(starts, lens) + np.arange(int(lens.sum())) - seg
        dkey = np.repeat(pair // c, lens) * v + np.asarray(indices, np.int64)[nz]
        pos = np.minimum(np.searchsorted(qkey, dkey), max(0, len(qkey) - 1))
        hit = qkey[pos] == dkey if len(qkey) else np.zeros(len(dkey), bool)
        prod = np.where(hit, np.asarray(values, np.float32)[nz] * qw[pos] if len(qkey) else 0.0, 0.0)
        sums = np.bincount(np.repeat(np.arange(len(pair)), lens), weights=prod, minlength=len(pair))
        out.reshape(-1)[pair] = sums
        return out

    def score(self, queries: Any, ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Lexical scores of query i with documents ``ids[i]`` (unknown ids -> nan)."""
        q = _check_queries(queries, self.vocab_size)
        indptr, indices, values = self.csr
        indptr = np.asarray(indptr)
        out = []
        for i, doc_ids in enumerate(ids):
            rows = self.idmap.rows(doc_ids)
            s = np.full(len(rows), np.nan, np.float32)
            ok = np.flatnonzero(rows >= 0)
            a, b = int(q.indptr[i]), int(q.indptr[i + 1])
            order = np.argsort(q.indices[a:b])
            qt, qw = np.asarray(q.indices[a:b])[order], np.asarray(q.values[a:b], np.float32)[order]
            if len(ok):
                r = rows[ok]
                starts, lens = indptr[r], indptr[r + 1] - indptr[r]
                seg = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
                nz = np.repeat(starts - seg, lens) + np.arange(int(lens.sum()))
                terms, w = np.asarray(indices)[nz], np.asarray(values)[nz]
                pos = np.clip(np.searchsorted(qt, terms), 0, max(0, len(qt) - 1))
                hit = (qt[pos] == terms) if len(qt) else np.zeros(len(terms), bool)
                prod = np.where(hit, w * (qw[pos] if len(qt) else 0.0), 0.0).astype(np.float32)
                s[ok] = np.add.reduceat(np.r_[prod, 0.0], seg)[: len(ok)] * (lens > 0) if len(prod) else 0.0
            out.append(s)
        return out

    def compact(self) -> None:
        """Drop tombstoned rows."""
        keep = self.idmap.alive
        if keep.all():
            return
        m = self._matrix()[np.flatnonzero(keep)]
        self.idmap = IdMap([i for i, a in zip(self.idmap.ids, keep) if a])
        self._csr = (m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32))
        self._pending, self._csc = [], None

    # ---- persistence --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"backend": self.backend, "n_threads": self.n_threads}

    def _write(self, d: Path) -> None:
        for name, arr in zip(("indptr", "indices", "values"), self.csr):
            save_array(d, name, arr)
        for name, arr in zip(("col_ptr", "doc_rows", "weights"), self.csc):
            save_array(d, name, arr)
        self.idmap.save(d)
        write_manifest(d, self.kind, self.config(), vocab_size=self.vocab_size, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> SparseIndex:
        idx = cls._from_config(d, manifest)
        idx.idmap = IdMap.load(d)
        idx.vocab_size = manifest.get("vocab_size")
        indptr, indices, values = (load_array(d, n, mmap) for n in ("indptr", "indices", "values"))
        col_ptr, doc_rows, weights = (load_array(d, n, mmap) for n in ("col_ptr", "doc_rows", "weights"))
        idx._csr, idx._csc = (indptr, indices, values), (col_ptr, doc_rows, weights)
        if len(idx._csr[0]) != idx.idmap.n_rows + 1:
            raise CheckpointError(
                f"{d}: indptr.npy does not match ids.json; the index is corrupt, rebuild it"
            )
        _check_postings(d, idx.vocab_size, idx.idmap.n_rows, idx._csr, idx._csc)
        return idx


def _check_postings(d: Path, vocab: Any, n_rows: int, csr: tuple, csc: tuple) -> None:
    """Shapes, dtypes and bounds of both matrices: the numba kernel indexes them unchecked
    (a ``doc_rows`` entry out of range is a segfault, a negative one a silently wrong score)."""
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 0:
        raise CheckpointError(f"{d / 'index.json'}: vocab_size must be a non-negative integer, got {vocab!r}")
    (indptr, indices, values), (col_ptr, doc_rows, weights) = csr, csc
    nnz = len(indices)
    check_offsets(d, "indptr", indptr, n_rows, nnz)
    check_bounds(d, "indices", indices, vocab)
    check_array(d, "values", values, "f", 1, nnz)
    check_offsets(d, "col_ptr", col_ptr, vocab, len(doc_rows))
    check_bounds(d, "doc_rows", doc_rows, n_rows)
    check_array(d, "weights", weights, "f", 1, len(doc_rows))
    if len(doc_rows) != nnz:
        raise CheckpointError(f"{d}: doc_rows.npy has {len(doc_rows)} postings but indices.npy {nnz}; rebuild it")
