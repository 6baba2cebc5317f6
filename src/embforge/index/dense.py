"""Dense indexes: exact inner product (chunked matmul), optionally over int8 or
binary codes with exact float rescoring of a shortlist.

Matryoshka: ``dim=d`` keeps the first ``d`` coordinates of every vector (documents
and queries) and L2-renormalises them (MRL truncation, as Arctic-Embed 2.0's 256).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, IdMap, as_field, check_k, hits_from_rows, topk
from embforge.index.storage import check_array, load_array, save_array, write_manifest
from embforge.scoring.matryoshka import truncate_dense
from embforge.types import Hits

__all__ = ["ExactDenseIndex", "prepare_dense", "QUANTIZATIONS"]

QUANTIZATIONS = ("none", "int8", "binary")


def prepare_dense(x: Any, dim: int | None, expect: int | None, what: str) -> np.ndarray:
    """Validate (N, D) vectors, Matryoshka-truncate to ``dim`` and renormalise.

    Args:
        x: (N, D) array or Embeddings with a dense head.
        dim: truncation size (None = keep D).
        expect: the D the index holds (None = first add).
        what: "documents" / "queries" for messages.
    Returns:
        (N, dim or D) float32, C-contiguous.
    """
    x = np.asarray(as_field(x, "dense"), dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DataError(f"dense {what} must be a (N, D) array, got shape {x.shape}")
    if dim is not None:
        if x.shape[1] < dim:
            raise DataError(
                f"dense {what} have dim {x.shape[1]} but the index truncates to dim={dim}; "
                f"use vectors with at least {dim} dims or an index with a smaller dim"
            )
        x = truncate_dense(x, dim)  # Matryoshka prefix, renormalised (unchanged when dim == D)
    if expect is not None and x.shape[1] != expect:
        raise DataError(
            f"dense {what} have dim {x.shape[1]} but the index holds dim {expect} vectors; "
            "encode with the same model (and the same Matryoshka dim) as the index"
        )
    if not np.isfinite(x).all():
        raise DataError(f"dense {what} contain NaN or inf values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _int8_codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: x ~= codes * scale[:, None]."""
    scale = np.abs(x).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    codes = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return codes, scale


def _binary_codes(x: np.ndarray) -> np.ndarray:
    """Sign bits, packed: (N, ceil(D/8)) uint8."""
    return np.packbits(x > 0, axis=1)


class DenseRows(BaseIndex):
    """Shared by every dense index (exact and faiss): float32 rows appended in chunks
    and concatenated lazily, validation of ``add``, exact ``score`` and tombstone ``compact``.

    Subclasses implement ``search_rows(queries, k) -> (rows, scores)`` and may override
    ``_rows_changed`` to drop structures derived from the rows (codes, a faiss graph).
    """

    heads = ("dense",)

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.d: int | None = None
        self._chunks: list[np.ndarray] = []  # float32 vectors, concatenated lazily
        self._vectors: np.ndarray | None = None

    def _rows_changed(self, compacted: bool) -> None:
        """Hook called when rows were concatenated (``compacted=False``) or compacted."""

    # ---- data ---------------------------------------------------------------------
    @property
    def vectors(self) -> np.ndarray:
        """(rows, D) float32 vectors of every row (dead rows included)."""
        if self._chunks:
            parts = ([self._vectors] if self._vectors is not None else []) + self._chunks
            self._vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self._chunks = []
            self._rows_changed(compacted=False)
        if self._vectors is None:
            return np.zeros((0, self.d or 0), np.float32)
        return self._vectors

    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Add (or replace) documents: ``vectors`` (N, D) or Embeddings with a dense head."""
        self.commit(*self.prepare(ids, vectors))

    def prepare(self, ids: Sequence[str], vectors: Any) -> tuple[list[str], np.ndarray]:
        """Validate an ``add`` without changing the index (``commit`` applies it)."""
        x = prepare_dense(vectors, self.dim, self.d, "documents")
        return self.idmap.check_new(ids, len(x), "vectors"), x

    def commit(self, ids: list[str], x: np.ndarray) -> None:
        self.d = x.shape[1]
        self.idmap.append(ids)
        self._chunks.append(x)

    @abc.abstractmethod
    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (Q, k), scores (Q, k)) of the top-``k`` documents per query; each backend defines it."""

    def search(self, queries: Any, k: int = 10) -> Hits:
        """Top-``k`` documents by inner product for each query row."""
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, rows, vals)

    def score_rows(self, queries: Any, rows: np.ndarray, block: int = 4_000_000) -> np.ndarray:
        """(Q, C) exact inner products of query i with document rows ``rows[i]`` (-1 or dead -> nan).

        Gathers each query block's candidate vectors once and scores them with one batched product.
        """
        q = prepare_dense(queries, self.dim, self.d, "queries")
        rows = np.asarray(rows, np.int64).reshape(len(q), -1)
        v = self.vectors
        ok = (rows >= 0) & self.idmap.alive[np.maximum(rows, 0)] if self.idmap.n_rows else rows < -1
        out = np.full(rows.shape, np.nan, np.float32)
        step = max(1, block // max(1, rows.shape[1] * v.shape[1]))
        for a in range(0, len(q) if v.shape[0] else 0, step):
            g = np.take(v, np.where(ok[a : a + step], rows[a : a + step], 0), axis=0)  # (B, C, D)
            s = np.matmul(g, q[a : a + step, :, None])[..., 0]
            out[a : a + step] = np.where(ok[a : a + step], s, np.nan)
        return out

    def score(self, queries: Any, ids: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Exact inner products of query i with the documents ``ids[i]`` (unknown ids -> nan)."""
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
        """Drop tombstoned rows (rebuilds the arrays and whatever is derived from them)."""
        keep = self.idmap.alive
        if keep.all():
            return
        v = np.asarray(self.vectors)[keep]
        self.idmap = IdMap([i for i, a in zip(self.idmap.ids, keep) if a])
        self._vectors, self._chunks = v, []
        self._rows_changed(compacted=True)


@INDEXES.register("dense-exact")
class ExactDenseIndex(DenseRows):
    """Brute-force inner-product search, exact (``quantization="none"``) or over
    compressed codes (int8 / binary) with exact float rescoring of the best
    ``rescore * k`` candidates.

    Args:
        dim: Matryoshka truncation (None = full dimension).
        quantization: "none", "int8" (per-row scale) or "binary" (sign bits, scored
            asymmetrically: float query . +-1 document bits).
        rescore: shortlist size multiplier for quantized search (default 10 for
            int8, 40 for binary, which loses more).
        chunk_size: documents scored per matmul block (bounds memory to Q*chunk floats).

    Example:
        >>> import numpy as np
        >>> idx = ExactDenseIndex()
        >>> idx.add(["a", "b"], np.eye(2, dtype=np.float32))
        >>> idx.search(np.array([[0.0, 1.0]], dtype=np.float32), k=1).ids
        [['b']]
    """

    kind = "dense-exact"

    def __init__(
        self,
        dim: int | None = None,
        quantization: str = "none",
        rescore: int | None = None,
        chunk_size: int = 65536,
    ) -> None:
        super().__init__(dim)
        if quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"unknown quantization {quantization!r}; choose from: {', '.join(QUANTIZATIONS)}"
            )
        if rescore is None:
            rescore = 40 if quantization == "binary" else 10
        if rescore < 1:
            raise ConfigError(f"rescore must be >= 1 (shortlist = rescore * k), got {rescore}")
        self.quantization = quantization
        self.rescore = int(rescore)
        self.chunk_size = int(chunk_size)
        self._codes: np.ndarray | None = None
        self._scales: np.ndarray | None = None

    def _rows_changed(self, compacted: bool) -> None:
        self._codes = self._scales = None

    def _ensure_codes(self) -> None:
        v = self.vectors
        if self.quantization == "int8" and self._codes is None:
            self._codes, self._scales = _int8_codes(np.asarray(v))
        elif self.quantization == "binary" and self._codes is None:
            self._codes = _binary_codes(np.asarray(v))

    def _built_codes(self) -> np.ndarray:
        if self._codes is None:
            raise RuntimeError(f"the {self.quantization} codes are not built; call _ensure_codes() first")
        return self._codes

    def _built_scales(self) -> np.ndarray:
        if self._scales is None:
            raise RuntimeError("the int8 scales are not built; call _ensure_codes() first")
        return self._scales

    # ---- search -------------------------------------------------------------------
    def _scan(self, q: np.ndarray, k: int, score_block) -> tuple[np.ndarray, np.ndarray]:
        """Running top-k over document blocks; ``score_block(q, a, b)`` -> (Q, b-a) scores."""
        n = self.idmap.n_rows
        best_r = np.zeros((len(q), 0), np.int64)
        best_v = np.zeros((len(q), 0), np.float32)
        alive = self.idmap.alive
        for a in range(0, n, self.chunk_size):
            b = min(n, a + self.chunk_size)
            s = score_block(q, a, b)
            if not alive[a:b].all():
                s[:, ~alive[a:b]] = -np.inf
            r, v = topk(s, k)
            best_r = np.concatenate([best_r, r + a], axis=1)
            best_v = np.concatenate([best_v, v], axis=1)
            if best_r.shape[1] > k:
                sel, best_v = topk(best_v, k)
                best_r = np.take_along_axis(best_r, sel, axis=1)
        return best_r, best_v

    def _float_block(self, q: np.ndarray, a: int, b: int) -> np.ndarray:
        return q @ np.asarray(self.vectors[a:b]).T

    def _int8_block(self, q: np.ndarray, a: int, b: int) -> np.ndarray:
        codes = self._built_codes()[a:b].astype(np.float32)
        return (q @ codes.T) * self._built_scales()[a:b][None, :]

    def _binary_block(self, q: np.ndarray, a: int, b: int) -> np.ndarray:
        # asymmetric: float query against +-1 document bits (better than Hamming between bit codes)
        bits = np.unpackbits(self._built_codes()[a:b], axis=1, count=q.shape[1]).astype(np.float32)
        return q @ (2.0 * bits - 1.0).T

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact float scores of candidate rows (Q, C) -> best k."""
        v = self.vectors
        out_r = np.full((len(q), min(k, cand.shape[1])), -1, np.int64)
        out_v = np.full(out_r.shape, -np.inf, np.float32)
        for i in range(len(q)):
            rows = cand[i][cand[i] >= 0]
            rows = rows[self.idmap.alive[rows]]
            if len(rows) == 0:
                continue
            s = np.asarray(v[np.sort(rows)]) @ q[i]
            rr, vv = topk(s[None, :], k)
            m = rr.shape[1]
            out_r[i, :m] = np.sort(rows)[rr[0]]
            out_v[i, :m] = vv[0]
        return out_r, out_v

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (Q, k), scores (Q, k)); rows -1 / score -inf pad when fewer live docs."""
        k = check_k(k)
        q = prepare_dense(queries, self.dim, self.d, "queries")
        if self.idmap.n_rows == 0:
            return np.full((len(q), 0), -1, np.int64), np.zeros((len(q), 0), np.float32)
        self._ensure_codes()
        if self.quantization == "none":
            return self._scan(q, k, self._float_block)
        shortlist = min(self.idmap.n_rows, k * self.rescore)  # dead rows are -inf in the scan
        block = self._int8_block if self.quantization == "int8" else self._binary_block
        cand, _ = self._scan(q, shortlist, block)
        return self._rescore(q, cand, k)

    def config(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "quantization": self.quantization,
            "rescore": self.rescore,
            "chunk_size": self.chunk_size,
        }

    def _write(self, d: Path) -> None:
        self._ensure_codes()
        save_array(d, "vectors", self.vectors)
        if self.quantization == "int8":
            save_array(d, "codes", self._built_codes())
            save_array(d, "scales", self._built_scales())
        elif self.quantization == "binary":
            save_array(d, "codes", self._built_codes())
        self.idmap.save(d)
        write_manifest(d, self.kind, self.config(), d_model=self.d, count=len(self))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> ExactDenseIndex:
        idx = cls._from_config(d, manifest)
        idx.idmap = IdMap.load(d)
        idx._vectors = load_array(d, "vectors", mmap)
        _check_rows(d, idx._vectors, idx.idmap)
        check_array(d, "vectors", idx._vectors, "f", 2, idx.idmap.n_rows)
        idx.d = manifest.get("d_model") or idx._vectors.shape[1]
        if idx.d != idx._vectors.shape[1] and idx.idmap.n_rows:
            raise CheckpointError(f"{d}: index.json says d_model {idx.d} but vectors.npy has dim {idx._vectors.shape[1]}")
        if idx.quantization in ("int8", "binary"):
            idx._codes = np.asarray(load_array(d, "codes", mmap))
            check_array(d, "codes", idx._codes, "i" if idx.quantization == "int8" else "u", 2, idx.idmap.n_rows)
        if idx.quantization == "int8":
            idx._scales = np.asarray(load_array(d, "scales", mmap))
            check_array(d, "scales", idx._scales, "f", 1, idx.idmap.n_rows)
        return idx


def _check_rows(d: Path, arr: np.ndarray, idmap: IdMap) -> None:

    if len(arr) != idmap.n_rows:
        raise CheckpointError(
            f"{d}: vectors.npy has {len(arr)} rows but ids.json has {idmap.n_rows}; the index is corrupt, rebuild it"
        )
