"""Approximate dense indexes on faiss: HNSW (graph) and IVF-PQ (compressed lists).

Both keep the float vectors next to the faiss file (memory-mapped on load) so that
IVF-PQ can rescore its shortlist exactly and either can be rebuilt/compacted.
Deletes are tombstones applied inside faiss with an ``IDSelectorBitmap``.

Shipped settings come from bench/search.py (bench/results/search.md): on real
all-MiniLM-L6-v2 embeddings (5,000 sentences, 300 queries) HNSW ``M=32,
efConstruction=200`` reaches recall@10 0.89 / 0.96 / 0.98 / 0.99 at efSearch 64 /
128 / 256 / 512 vs exact search, so ``ef_search=256`` ships (DESIGN.md measured 0.88
at M=32, efSearch=64). IVF-PQ ships ``nprobe=32`` with a ``rescore=10``x exact float
shortlist (0.95 on the same set). IVF-Flat (``dense-ivf``) keeps exact float vectors in its
lists: the fast approximate first stage of a hybrid index at 100k documents (bench/search.py,
"hybrid 3 heads" rows: recall of the fused top-10 against the exhaustive fused ranking).
"""

from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, MissingDependencyError
from embforge.index.base import INDEXES, IdMap, check_k, topk
from embforge.index.dense import DenseRows, _check_rows, prepare_dense
from embforge.index.storage import check_array, load_array, save_array, write_manifest

__all__ = ["HNSWIndex", "IVFFlatIndex", "IVFPQIndex", "faiss_module", "new_flat_ip", "new_hnsw_ip"]


def faiss_module():
    """The faiss module, imported on first use: importing it costs ~0.7 s, paid only by
    the faiss backends (and mining), not by every ``import embforge.index``."""
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a core dependency
        raise MissingDependencyError("faiss-cpu", "approximate dense search") from None
    return faiss


_faiss = faiss_module


def new_flat_ip(d: int):
    """An exact inner-product faiss index (``IndexFlatIP``) for (N, d) float32 vectors."""
    return faiss_module().IndexFlatIP(d)


def new_hnsw_ip(d: int, m: int, ef_construction: int, ef_search: int | None = None):
    """A faiss HNSW graph (``IndexHNSWFlat``, inner product) of degree ``m`` (Malkov and
    Yashunin, 2018, "Efficient and robust approximate nearest neighbor search using
    Hierarchical Navigable Small World graphs")."""
    faiss = faiss_module()
    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    if ef_search is not None:
        index.hnsw.efSearch = ef_search
    return index


class _FaissDenseIndex(DenseRows):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__(dim)
        self._faiss: Any = None  # the faiss index (faiss ships no type stubs), rows [0, _n_built)
        self._n_built = 0

    def _rows_changed(self, compacted: bool) -> None:
        if compacted:  # appended rows are added to faiss lazily; compacted ones need a rebuild
            self._faiss, self._n_built = None, 0

    @abc.abstractmethod
    def _new_index(self, d: int, n: int):
        """A new faiss index for ``n`` vectors of dim ``d`` (untrained is fine)."""

    @abc.abstractmethod
    def _params(self, sel):
        """faiss ``SearchParameters`` with the id selector ``sel``."""

    def _build(self) -> None:
        v = self.vectors
        n = len(v)
        if self._faiss is None and n:
            if self.d is None:
                raise RuntimeError(f"{type(self).__name__} holds {n} rows but no vector dimension")
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

    def _write(self, d: Path) -> None:
        self._build()
        save_array(d, "vectors", self.vectors)
        self.idmap.save(d)
        if self._faiss is not None:
            _faiss().write_index(self._faiss, str(d / "faiss.index"))
        write_manifest(d, self.kind, self.config(), d_model=self.d, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool):
        idx = cls._from_config(d, manifest)
        idx.idmap = IdMap.load(d)
        idx._vectors = load_array(d, "vectors", mmap)
        idx.d = manifest.get("d_model")
        _check_rows(d, idx._vectors, idx.idmap)
        check_array(d, "vectors", idx._vectors, "f", 2, idx.idmap.n_rows)
        path = d / "faiss.index"
        if idx.idmap.n_rows:
            if not path.exists():
                raise CheckpointError(
                    f"index file {path} is missing; the index directory is incomplete: rebuild it"
                )
            try:
                idx._faiss = _faiss().read_index(str(path))
            except RuntimeError as e:  # faiss reports a corrupt file as a RuntimeError
                msg = " ".join(str(e).split())[:120]
                raise CheckpointError(f"{path}: not a readable faiss index ({msg}); rebuild it") from None
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
        return new_hnsw_ip(d, self.m, self.ef_construction)

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


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` coarse clusters (faiss's guideline), at most one per 39 vectors
    (faiss warns below 39 training points per centroid), at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


@INDEXES.register("dense-ivf")
class IVFFlatIndex(_FaissDenseIndex):
    """faiss IVF-Flat: k-means coarse clusters (trained on the first build's vectors), exact
    float vectors in the inverted lists, ``nprobe`` lists scanned per query (Jegou et al., 2011,
    "Product quantization for nearest neighbor search", the IVF part). Scores are exact inner
    products; only documents outside the probed lists are missed.

    Args:
        dim: Matryoshka truncation (None = full).
        nlist: number of coarse clusters (None = about 4*sqrt(N), see :func:`default_nlist`).
        nprobe: lists visited per query (higher = better recall, slower search).
    """

    kind = "dense-ivf"

    def __init__(self, dim: int | None = None, nlist: int | None = None, nprobe: int = 32) -> None:
        super().__init__(dim)
        if nprobe < 1 or (nlist is not None and nlist < 1):
            raise ConfigError(f"IVF needs nlist >= 1 and nprobe >= 1; got {nlist}, {nprobe}")
        self.nlist, self.nprobe = nlist, int(nprobe)

    def _new_index(self, d: int, n: int):
        faiss = _faiss()
        self.nlist = self.nlist or default_nlist(n)
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, self.nlist, faiss.METRIC_INNER_PRODUCT)

    def _params(self, sel):
        p = _faiss().SearchParametersIVF()
        p.nprobe = self.nprobe
        if sel is not None:
            p.sel = sel
        return p

    def config(self) -> dict[str, Any]:
        return {"dim": self.dim, "nlist": self.nlist, "nprobe": self.nprobe}


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
        nlist = self.nlist or default_nlist(n)
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
