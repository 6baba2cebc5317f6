"""Multi-vector (ColBERT late-interaction) store: token vectors on disk, MaxSim.

``s_mul(q, p) = (1/N_q) * sum_i max_j <E_q[i], E_p[j]>`` (Khattab and Zaharia, 2020,
"ColBERT"; BGE-M3, Chen et al., 2024, divides by the number of query tokens), computed
by :mod:`embforge.scoring.maxsim`.

All documents' token vectors are concatenated into one (T_total, M) array with
``offsets`` (N+1,) marking each document's rows; stored as float16 (default) or
int8 with a per-token scale, and memory-mapped on load, so re-ranking a candidate
list only touches those documents' rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, IdMap, as_field, check_k, hits_from_rows, topk
from embforge.index.storage import check_array, check_offsets, load_array, save_array, write_manifest
from embforge.scoring.maxsim import maxsim_flat, maxsim_rerank_rows
from embforge.types import Hits

__all__ = ["MultiVectorIndex", "MULTIVECTOR_DTYPES"]

MULTIVECTOR_DTYPES = ("float16", "int8", "float32")


def _as_list(x: Any, what: str, expect: int | None) -> list[np.ndarray]:
    x = as_field(x, "multivector")
    if isinstance(x, np.ndarray) and x.ndim == 2:
        x = [x]
    out = []
    for i, a in enumerate(x):
        a = np.asarray(a, dtype=np.float32)
        if expect is None and a.ndim == 2:
            expect = a.shape[1]  # every array of one call must agree
        if a.ndim != 2:
            raise DataError(f"multi-vector {what}[{i}] must be a (T, M) array, got shape {a.shape}")
        if expect is not None and a.shape[1] != expect:
            raise DataError(
                f"multi-vector {what}[{i}] has dim {a.shape[1]} but the index holds dim {expect} "
                "token vectors; encode with the same model as the index"
            )
        out.append(a)
    return out


@INDEXES.register("multivector")
class MultiVectorIndex(BaseIndex):
    """Token vectors of every document, MaxSim re-ranking and brute-force search.

    Args:
        dtype: storage type: "float16" (default), "int8" (per-token scale, 2x
            smaller again) or "float32".
        chunk_tokens: document tokens scored per block in brute-force search.
    """

    kind = "multivector"
    heads = ("multivector",)

    def __init__(self, dtype: str = "float16", chunk_tokens: int = 262144) -> None:
        super().__init__()
        if dtype not in MULTIVECTOR_DTYPES:
            raise ConfigError(
                f"unknown multi-vector dtype {dtype!r}; choose from: {', '.join(MULTIVECTOR_DTYPES)}"
            )
        self.dtype = dtype
        self.chunk_tokens = int(chunk_tokens)
        self.m: int | None = None
        self._store: tuple[np.ndarray, np.ndarray | None, np.ndarray] | None = (
            None  # vectors, scales, offsets
        )
        self._pending: list[np.ndarray] = []

    def _encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.dtype == "int8":
            scale = np.abs(x).max(axis=1) / 127.0 if len(x) else np.zeros(0, np.float32)
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            return np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8), scale
        return x.astype(self.dtype), None

    def _decode(self, codes: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
        x = np.asarray(codes).astype(np.float32)
        return x * np.asarray(scales)[:, None] if scales is not None else x

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Add (or replace) documents: a list of (T_i, M) arrays or Embeddings with a multivector head."""
        self.commit(*self.prepare(ids, vectors))

    def prepare(self, ids: Sequence[str], vectors: Any) -> tuple[list[str], list[np.ndarray]]:
        """Validate an ``add`` without changing the index (``commit`` applies it)."""
        xs = _as_list(vectors, "documents", self.m)
        return self.idmap.check_new(ids, len(xs), "token-vector arrays"), xs

    def commit(self, ids: list[str], xs: list[np.ndarray]) -> None:
        if xs:
            self.m = xs[0].shape[1]
        self.idmap.append(ids)
        self._pending.extend(xs)

    @property
    def store(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(vectors (T_total, M), scales (T_total,) or None, offsets (rows+1,))."""
        if self._pending:
            flat = np.concatenate(self._pending)
            codes, scales = self._encode(flat)
            lens = np.array([len(a) for a in self._pending], np.int64)
            if self._store is None:
                self._store = (codes, scales, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64))
            else:
                v, s, off = self._store
                self._store = (
                    np.concatenate([np.asarray(v), codes]),
                    None if s is None else np.concatenate([np.asarray(s), scales]),
                    np.concatenate([np.asarray(off), off[-1] + np.cumsum(lens)]).astype(np.int64),
                )
            self._pending = []
        if self._store is None:
            return np.zeros((0, self.m or 0), self.dtype), None, np.zeros(1, np.int64)
        return self._store

    def doc_vectors(self, row: int) -> np.ndarray:
        """(T_d, M) float32 token vectors of row ``row``."""
        v, s, off = self.store
        a, b = int(off[row]), int(off[row + 1])
        return self._decode(v[a:b], None if s is None else s[a:b])

    # ---- scoring ------------------------------------------------------------------
    def score_rows(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """(Q, C) MaxSim of query i with document rows ``rows[i]`` (-1 or dead -> nan), from storage."""
        qs = _as_list(queries, "queries", self.m)
        rows = np.asarray(rows, np.int64).reshape(len(qs), -1)
        v, s, off = self.store
        rows = np.where((rows >= 0) & self.idmap.alive[np.maximum(rows, 0)], rows, -1)
        return maxsim_rerank_rows(qs, rows, v, off, s)

    def score(self, queries: Any, ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """MaxSim of query i with documents ``ids[i]`` (unknown ids -> nan), batched per query block."""
        n = min(len(ids), len(as_field(queries, "multivector")))
        lists = [self.idmap.rows(doc_ids) for doc_ids in ids][:n]
        padded = np.full((n, max((len(r) for r in lists), default=0)), -1, np.int64)
        for i, r in enumerate(lists):
            padded[i, : len(r)] = r
        scores = self.score_rows(_as_list(queries, "queries", self.m)[:n], padded)
        return [scores[i, : len(r)] for i, r in enumerate(lists)]

    def rerank(self, queries: Any, candidates: Sequence[Sequence[str]], k: int | None = None) -> Hits:
        """Re-rank each query's candidate ids by MaxSim (unknown ids dropped)."""
        scores = self.score(queries, candidates)
        ids_out, sc_out = [], []
        for cand, s in zip(candidates, scores):
            ok = ~np.isnan(s)
            c = [c for c, o in zip(cand, ok) if o]
            s = s[ok]
            order = np.argsort(-s, kind="stable")[: k or len(c)]
            ids_out.append([c[i] for i in order])
            sc_out.append([float(s[i]) for i in order])
        return Hits(ids=ids_out, scores=sc_out)

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute-force MaxSim over every document (for small corpora)."""
        k = check_k(k)
        qs = _as_list(queries, "queries", self.m)
        v, s, off = self.store
        n = self.idmap.n_rows
        scores = np.zeros((len(qs), n), np.float32)
        qcat = np.concatenate(qs) if qs else np.zeros((0, self.m or 0), np.float32)  # (sum T_q, M)
        qoff = np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64)
        # block of whole documents so that the (sum T_q, block tokens) similarity stays small
        budget = max(1024, min(self.chunk_tokens, 32_000_000 // max(1, len(qcat))))
        a = 0
        while a < n and len(qcat):
            b = int(np.searchsorted(off, off[a] + budget, side="right")) - 1
            b = min(max(b, a + 1), n)
            ta, tb = int(off[a]), int(off[b])
            if tb > ta:
                block = self._decode(v[ta:tb], None if s is None else s[ta:tb])
                scores[:, a:b] = maxsim_flat(qcat, qoff, block, off[a : b + 1] - ta)  # (Q, b - a)
            a = b
        scores[:, ~self.idmap.alive] = -np.inf
        return topk(scores, k)

    def search(self, queries: Any, k: int = 10) -> Hits:
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, rows, vals)

    def compact(self) -> None:
        keep = np.flatnonzero(self.idmap.alive)
        if len(keep) == self.idmap.n_rows:
            return
        docs = [self.doc_vectors(int(r)) for r in keep]
        ids = [self.idmap.ids[r] for r in keep]
        self.idmap, self._store, self._pending = IdMap(), None, []
        self.add(ids, docs)

    # ---- persistence --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "chunk_tokens": self.chunk_tokens}

    def _write(self, d: Path) -> None:
        v, s, off = self.store
        save_array(d, "vectors", v)
        save_array(d, "offsets", off)
        if s is not None:
            save_array(d, "scales", s)
        self.idmap.save(d)
        write_manifest(d, self.kind, self.config(), dim=self.m, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> MultiVectorIndex:
        idx = cls._from_config(d, manifest)
        idx.idmap = IdMap.load(d)
        idx.m = manifest.get("dim")
        v = load_array(d, "vectors", mmap)
        off = np.asarray(load_array(d, "offsets", False))
        s = load_array(d, "scales", mmap) if idx.dtype == "int8" else None
        if len(off) != idx.idmap.n_rows + 1 or int(off[-1]) != len(v):
            raise CheckpointError(
                f"{d}: offsets.npy does not match vectors.npy/ids.json; the index is corrupt, rebuild it"
            )
        check_offsets(d, "offsets", off, idx.idmap.n_rows, len(v))
        check_array(d, "vectors", v, "i" if idx.dtype == "int8" else "f", 2)
        if len(v) and (not isinstance(idx.m, int) or v.shape[1] != idx.m):
            raise CheckpointError(
                f"{d / 'vectors.npy'}: tokens of dim {v.shape[1]} but index.json says dim {idx.m!r}; "
                "the index is corrupt or hostile, rebuild it"
            )
        if s is not None:
            check_array(d, "scales", s, "f", 1, len(v))
        idx._store = (v, s, off)
        return idx
