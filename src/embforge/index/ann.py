"""Approximate dense indexes on faiss: HNSW (graph) and IVF-PQ (compressed lists).

Both keep the float vectors next to the faiss file (memory-mapped on load) so that
IVF-PQ can rescore its shortlist exactly and either can be rebuilt/compacted.
Deletes are tombstones applied inside faiss with an ``IDSelectorBitmap``.

Shipped settings come from bench/search.py (bench/results/search.md): on real
all-MiniLM-L6-v2 embeddings (5,000 sentences, 300 queries) HNSW ``M=32,
efConstruction=200`` reaches recall@10 0.89 / 0.96 / 0.98 / 0.99 at efSearch 64 /
128 / 256 / 512 vs exact search, so ``ef_search=256`` ships (DESIGN.md measured 0.88
at M=32, efSearch=64). IVF-PQ ships ``nprobe=32`` with a ``rescore=10``x exact float
shortlist (0.95 on the same set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError
from embforge.index.base import INDEXES, BaseIndex, IdMap, check_k, hits_from_rows, topk
from embforge.index.dense import _check_rows, prepare_dense
from embforge.index.storage import load_array, save_array, write_manifest
from embforge.types import Hits

__all__ = ["HNSWIndex", "IVFPQIndex"]


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a core dependency
        from embforge.errors import MissingDependencyError

        raise MissingDependencyError("faiss-cpu", "approximate dense search") from None
    return faiss


class _FaissDenseIndex(BaseIndex):
    heads = ("dense",)

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.d: int | None = None
        self._vectors: np.ndarray | None = None
        self._pending: list[np.ndarray] = []
        self._faiss = None  # the faiss index, rows [0, _n_built)
        self._n_built = 0

    # subclasses: _new_index(d, n) -> faiss index (untrained ok); _params(sel) -> SearchParameters
    def _new_index(self, d: int, n: int):
        raise NotImplementedError

    def _params(self, sel):
        raise NotImplementedError

    @property
    def vectors(self) -> np.ndarray:
        if self._pending:
            parts = ([self._vectors] if self._vectors is not None else []) + self._pending
            self._vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self._pending = []
        return self._vectors if self._vectors is not None else np.zeros((0, self.d or 0), np.float32)

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Add (or replace) documents; the faiss structure is updated lazily at search/save."""
        self.commit(*self.prepare(ids, vectors))

    def prepare(self, ids: Sequence[str], vectors: Any) -> tuple[list[str], np.ndarray]:
        """Validate an ``add`` without changing the index (``commit`` applies it)."""
        x = prepare_dense(vectors, self.dim, self.d, "documents")
        return self.idmap.check_new(ids, len(x), "vectors"), x

    def commit(self, ids: list[str], x: np.ndarray) -> None:
        self.d = x.shape[1]
        self.idmap.append(ids)
        self._pending.append(x)

    def _build(self) -> None:
        v = self.vectors
        n = len(v)
        if self._faiss is None and n:
            self._faiss = self._new_index(self.d, n)
            if not self._faiss.is_trained:
                self._faiss.train(np.ascontiguousarray(v))
        if n > self._n_built:
            self._faiss.add(np.ascontiguousarray(v[self._n_built :]))
            self._n_built = n

    def _faiss_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._build()
        sel = None
        if self.idmap.n_dead:
            bits = np.packbits(self.idmap.alive, bitorder="little")
            sel = _faiss().IDSelectorBitmap(len(self.idmap.alive), _faiss().swig_ptr(bits))
            sel._bits = bits  # keep the buffer alive while faiss uses it
        scores, rows = self._faiss.search(q, min(k, self.idmap.n_rows), params=self._params(sel))
        return rows.astype(np.int64), scores

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = prepare_dense(queries, self.dim, self.d, "queries")
        if len(self) == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        rows, vals = self._faiss_search(q, k)
        vals = np.where(rows >= 0, vals, -np.inf).astype(np.float32)
        return rows, vals

    def search(self, queries: Any, k: int = 10) -> Hits:
        """Approximate top-``k`` by inner product for each query row."""
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, rows, vals)

    def score(self, queries: Any, ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Exact inner products of query i with documents ``ids[i]`` (unknown ids -> nan)."""
        q = prepare_dense(queries, self.dim, self.d, "queries")
        v = self.vectors
        out = []
        for qi, doc_ids in zip(q, ids):
            rows = self.idmap.rows(doc_ids)
            s = np.full(len(rows), np.nan, np.float32)
            ok = rows >= 0
            if ok.any():
                s[ok] = np.asarray(v[rows[ok]]) @ qi
            out.append(s)
        return out

    def compact(self) -> None:
        """Drop tombstones: rebuild the faiss structure from the live vectors."""
        keep = self.idmap.alive
        if keep.all():
            return
        v = np.asarray(self.vectors)[keep]
        self.idmap = IdMap([i for i, a in zip(self.idmap.ids, keep) if a])
        self._vectors, self._pending, self._faiss, self._n_built = v, [], None, 0

    def _write(self, d: Path) -> None:
        self._build()
        save_array(d, "vectors", self.vectors)
        self.idmap.save(d)
        if self._faiss is not None:
            _faiss().write_index(self._faiss, str(d / "faiss.index"))
        write_manifest(d, self.kind, self.config(), d_model=self.d, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool):
        idx = cls(**manifest["config"])
        idx.idmap = IdMap.load(d)
        idx._vectors = load_array(d, "vectors", mmap)
        idx.d = manifest.get("d_model")
        _check_rows(d, idx._vectors, idx.idmap)
        path = d / "faiss.index"
        if idx.idmap.n_rows:
            if not path.exists():
                raise CheckpointError(
                    f"index file {path} is missing; the index directory is incomplete: rebuild it"
                )
            idx._faiss = _faiss().read_index(str(path))
            idx._n_built = idx._faiss.ntotal
            if idx._faiss.d != idx.d or idx._n_built != idx.idmap.n_rows:
                raise CheckpointError(
                    f"{path} holds {idx._n_built} vectors of dim {idx._faiss.d} but the index has "
                    f"{idx.idmap.n_rows} of dim {idx.d}; the index is corrupt, rebuild it"
                )
        return idx


@INDEXES.register("dense-hnsw")
class HNSWIndex(_FaissDenseIndex):
    """faiss HNSW graph over float vectors (inner product).

    Args:
        dim: Matryoshka truncation (None = full).
        m: graph degree (memory ~ 2*m ints per vector).
        ef_construction: build-time beam width (higher = better graph, slower build).
        ef_search: query-time beam width (higher = better recall, slower search).
    """

    kind = "dense-hnsw"

    def __init__(
        self, dim: int | None = None, m: int = 32, ef_construction: int = 200, ef_search: int = 256
    ) -> None:
        super().__init__(dim)
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise ConfigError(
                f"HNSW needs m >= 2, ef_construction >= 1, ef_search >= 1; got {m}, {ef_construction}, {ef_search}"
            )
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(d, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _params(self, sel):
        p = _faiss().SearchParametersHNSW()
        p.efSearch = self.ef_search
        if sel is not None:
            p.sel = sel
        return p

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ef_search < k:  # faiss HNSW returns at most efSearch results
            saved, self.ef_search = self.ef_search, k
            try:
                return super().search_rows(queries, k)
            finally:
                self.ef_search = saved
        return super().search_rows(queries, k)

    def config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
        }


@INDEXES.register("dense-ivfpq")
class IVFPQIndex(_FaissDenseIndex):
    """faiss IVF-PQ (inverted lists of product-quantised codes), trained on the first
    build's vectors, with exact float rescoring of the ``rescore * k`` best codes.

    Args:
        dim: Matryoshka truncation (None = full).
        nlist: number of coarse clusters (None = about 4*sqrt(N), at least 1).
        pq_m: sub-quantizers (None = the largest divisor of D <= D/4: 4-dim sub-vectors).
        nbits: bits per sub-quantizer code (None = 8, fewer for tiny corpora).
        nprobe: lists visited per query.
        rescore: shortlist multiplier for float rescoring (1 = no rescoring).
    """

    kind = "dense-ivfpq"

    def __init__(
        self,
        dim: int | None = None,
        nlist: int | None = None,
        pq_m: int | None = None,
        nbits: int | None = None,
        nprobe: int = 32,
        rescore: int = 10,
    ) -> None:
        super().__init__(dim)
        if rescore < 1 or nprobe < 1:
            raise ConfigError(f"IVF-PQ needs nprobe >= 1 and rescore >= 1; got {nprobe}, {rescore}")
        self.nlist, self.pq_m, self.nbits = nlist, pq_m, nbits
        self.nprobe, self.rescore = int(nprobe), int(rescore)

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        m = self.pq_m or max(x for x in range(1, max(1, d // 4) + 1) if d % x == 0)
        if d % m:
            raise ConfigError(f"pq_m={m} must divide the vector dim {d}; choose a divisor of {d}")
        nbits = self.nbits or int(np.clip(math.floor(math.log2(max(2, n // 39))), 1, 8))
        self.nlist, self.pq_m, self.nbits = nlist, m, nbits
        return faiss.index_factory(d, f"IVF{nlist},PQ{m}x{nbits}", faiss.METRIC_INNER_PRODUCT)

    def _params(self, sel):
        p = _faiss().SearchParametersIVF()
        p.nprobe = self.nprobe
        if sel is not None:
            p.sel = sel
        return p

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = check_k(k)
        q = prepare_dense(queries, self.dim, self.d, "queries")
        if len(self) == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        cand, approx = self._faiss_search(q, k * self.rescore)
        if self.rescore == 1:
            return cand[:, :k], np.where(cand[:, :k] >= 0, approx[:, :k], -np.inf).astype(np.float32)
        v = self.vectors
        safe = np.where(cand >= 0, cand, 0)
        exact = np.einsum("qcd,qd->qc", np.asarray(v[safe.ravel()]).reshape(*safe.shape, -1), q)
        exact = np.where(cand >= 0, exact, -np.inf).astype(np.float32)
        sel, vals = topk(exact, k)
        return np.take_along_axis(cand, sel, axis=1), vals

    def config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "nlist": self.nlist,
            "pq_m": self.pq_m,
            "nbits": self.nbits,
            "nprobe": self.nprobe,
            "rescore": self.rescore,
        }
