"""Compressed multi-vector index: centroid candidate generation, residual PQ codes, MaxSim re-rank.

The PLAID pipeline (Santhanam et al., 2022, "PLAID: An Efficient Engine for Late
Interaction Retrieval") on faiss building blocks, over ColBERT token vectors
(Khattab and Zaharia, 2020):

1. **Centroids**: faiss k-means over (a sample of) the token vectors; every token keeps its
   centroid id, every centroid an inverted list of the documents holding one of its tokens.
2. **Candidate generation without brute force**: each query token probes its ``nprobe`` best
   centroids; the candidates are the documents of those lists (never a pass over the corpus).
3. **Centroid interaction** (PLAID's stage 2): each candidate is scored once by MaxSim with every
   token replaced by its centroid, ``sum_i max_{j in d} <q_i, C[cid_j]>`` (numba kernel over the
   centroid ids; nothing decompressed), plus ``<sum_i q_i, mean_j r_j>`` with the document's mean
   token residual ``r_j = x_j - C[cid_j]`` (256 bytes a document in float16: the context all tokens of
   a text share, which centroids drop); the best ``ndocs`` survive. With ``t_cs`` (PLAID's centroid
   pruning) only tokens of centroids scoring >= ``t_cs`` against some query token are read.
4. **Residual scoring** (when ``exact`` < ``ndocs``, or ``exact`` = 0): MaxSim over centroid + faiss
   PQ residual (ColBERTv2's residual compression, Santhanam et al., 2021), computed from per-query
   lookup tables without decoding (Jegou et al., 2011), residuals of pruned centroids' tokens
   skipped; the best ``exact`` survive.
5. **Exact MaxSim** of the final shortlist, all queries in one batched re-rank
   (:func:`embforge.scoring.maxsim_rerank_rows`) from the float16 token store, memory-mapped from
   disk, so the final scores are exact and recall is limited by stages 2-4 only. With
   ``store="codes"`` no token store is kept on disk: the shortlist's tokens are decoded
   (centroid + PQ residual) and re-scored by the same MaxSim, so the index is about ``pq_m`` + 2
   bytes a token (measured curve of bytes a token vs recall@10 per codec in
   bench/results/search_multivector.md).

Stages 1-4 of a block of queries run in one parallel numba kernel (``prange`` over queries,
:func:`embforge.index._plaid_kernel.centroid_shortlists`). In memory: 2-4 bytes of centroid
id + ``pq_m`` bytes of code per token and the inverted lists; the float16 store
(``MultiVectorIndex``'s) stays on disk and is read only for the final exact stage (``exact`` >
0). Shipped settings are measured by bench/search_multivector.py
(bench/results/search_multivector.md: at 100k documents a median 22.7x exact brute force at
recall@10 0.951; PQ-only, exact=0, reads 0.17 of float16 but reaches recall@10 0.75).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError
from embforge.index.anisotropic import anisotropic_codes
from embforge.index.ann import faiss_module
from embforge.index.base import INDEXES, IdMap, check_k, hits_from_rows, topk
from embforge.index.multivector import MultiVectorIndex, _as_list
from embforge.index.storage import (
    check_array,
    check_bounds,
    check_offsets,
    load_array,
    save_array,
    write_manifest,
)
from embforge.scoring.maxsim import maxsim_padded, maxsim_rerank_rows, pad_queries, padded_token_index
from embforge.types import Hits

__all__ = ["PLAID_STORES", "PlaidIndex", "default_nlist"]

PLAID_STORES = ("vectors", "codes")  # what the final re-score reads (and what is saved)


def default_nlist(n_tokens: int) -> int:
    """Power of two near 4 sqrt(tokens), in [8, 65536]. PLAID uses 2^floor(log2(16 sqrt(tokens)));
    4 sqrt is what k-means on a 2-core machine trains in minutes, and at 1.4M tokens it lifted
    recall@10 at equal speed from 0.85 (1,024 centroids) to 0.94 (4,096; bench/results/search_multivector.md)."""
    return int(min(65536, max(8, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(n_tokens)))))))


def _pq_m(m: int, want: int) -> int:
    """The largest divisor of ``m`` not above ``want`` (faiss PQ needs m % pq_m == 0)."""
    return max(d for d in range(1, min(m, want) + 1) if m % d == 0)


@contextmanager
def _faiss_one_thread() -> Iterator[None]:
    """faiss k-means / PQ on one OpenMP thread, restored after: its OpenMP threads spin-wait and
    crawl when the cores are shared (measured: the PLAID unit tests 15 s vs 410 s at load 9)."""
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _segment_means(rows: Any, off: np.ndarray, m: int, chunk: int = 65536) -> np.ndarray:
    """(N, m) float32 mean over each document's token rows (0 for an empty document);
    ``rows(a, b)`` gives the (b - a, m) rows of tokens a..b, read ``chunk`` tokens at a time."""
    off = np.asarray(off, np.int64)
    n_rows, lens = len(off) - 1, np.diff(off)
    out = np.zeros((n_rows, m), np.float32)
    starts = off[:-1][lens > 0]  # first token of every non-empty document
    docs = np.flatnonzero(lens > 0)
    for a in range(0, int(off[-1]), chunk):
        b = min(int(off[-1]), a + chunk)
        x = rows(a, b)
        lo, hi = np.searchsorted(starts, a, "right") - 1, np.searchsorted(starts, b, "left")
        seg = np.maximum(starts[max(lo, 0) : hi], a) - a  # segment starts inside the chunk
        out[docs[max(lo, 0) : hi]] += np.add.reduceat(x, seg, axis=0)
    return out / np.maximum(lens, 1)[:, None].astype(np.float32)


@INDEXES.register("multivector-plaid")
class PlaidIndex(MultiVectorIndex):
    """Multi-vector index with PLAID-style candidate generation and residual PQ compression.

    Args:
        nlist: centroids (None = :func:`default_nlist` of the token count at first build).
        nprobe: centroids probed per query token.
        ndocs: candidates kept after centroid interaction (stage 3).
        exact: candidates re-scored exactly from the float16 store (0 = return the
            decompressed scores).
        pq_m: residual sub-quantizers per token (a divisor of the dim; None = dim / 8, or dim / 4
            with ``store="codes"``: 96 B a token at 384 dims, 1/8 of float16 with the centroid id), each
            ``pq_bits`` bits (8; fewer when the training sample is small).
        train_tokens: at most this many tokens train the centroids and the PQ.
        dtype: the exact token store ("float16", "int8", "float32").
        n_threads: numba threads for stages 1-4 (queries split among them; 0, the default, = one per core).
        t_cs: PLAID's centroid score threshold (None = no pruning): the centroid interaction reads
            only tokens whose centroid scores >= ``t_cs`` against some query token, and stage 4
            decompresses only their residuals (scores are inner products: 0.2 suits unit vectors).
        store: what the final re-score reads. "vectors" (default): the exact token store (``dtype``,
            saved as vectors.npy, memory-mapped). "codes": every token as its centroid + PQ residual,
            decoded (Santhanam et al., 2021, ColBERTv2's residual compression; no token store is
            saved: about ``pq_m`` + 2 bytes a token): ``exact`` shortlisted documents a query are
            re-scored by MaxSim over their decoded tokens, so scores (and ``score``/``rerank``)
            are approximate (hence more sub-quantizers by default, ``pq_m`` = dim / 4).
            Adding to a loaded "codes" index rebuilds its tokens from their codes first.
        pq_eta: how the residual codes are chosen: 1 = faiss's nearest codes; above 1, ScaNN's
            score-aware loss (:mod:`embforge.index.anisotropic`: error along the token costs
            ``pq_eta`` times the error across it), which re-scores the shortlist closer to exact
            MaxSim at the same bytes (recall@10 0.923 -> 0.941 measured with 96 sub-quantizers) and
            costs about 5x faiss's encode time. None (default) = 4 for ``store="codes"``, 1 otherwise.
    """

    kind = "multivector-plaid"

    def __init__(
        self,
        nlist: int | None = None,
        nprobe: int = 3,
        ndocs: int = 768,
        exact: int = 256,
        pq_m: int | None = None,
        train_tokens: int = 131_072,
        dtype: str = "float16",
        pq_bits: int = 8,
        n_threads: int = 0,
        t_cs: float | None = 0.2,
        store: str = "vectors",
        pq_eta: float | None = None,
    ) -> None:
        super().__init__(dtype=dtype)
        if store not in PLAID_STORES:
            raise ConfigError(f"PlaidIndex store={store!r}; choose from: {', '.join(PLAID_STORES)}")
        if (
            nprobe < 1
            or ndocs < 1
            or exact < 0
            or (nlist is not None and nlist < 1)
            or (pq_m is not None and pq_m < 1)
            or not 1 <= pq_bits <= 8
            or (t_cs is not None and not math.isfinite(t_cs))
            or (pq_eta is not None and not (math.isfinite(pq_eta) and pq_eta >= 1))
        ):
            raise ConfigError(
                f"PlaidIndex needs nlist >= 1, nprobe >= 1, ndocs >= 1, exact >= 0, pq_m >= 1 and "
                f"1 <= pq_bits <= 8 (one uint8 code per sub-quantizer), a finite t_cs (or None) and pq_eta >= 1 (or None); "
                f"got nlist={nlist}, nprobe={nprobe}, ndocs={ndocs}, exact={exact}, pq_m={pq_m}, pq_bits={pq_bits}, "
                f"t_cs={t_cs}, pq_eta={pq_eta}"
            )
        self.nlist, self.nprobe, self.ndocs, self.exact = nlist, int(nprobe), int(ndocs), int(exact)
        self.pq_m, self.pq_bits, self.train_tokens = pq_m, int(pq_bits), int(train_tokens)
        self.n_threads = max(0, int(n_threads))
        self.t_cs = None if t_cs is None else float(t_cs)
        self._codes: dict[str, np.ndarray] | None = None  # centroids, token_cid, codes, pq, ivf_ptr, ivf_docs
        self._pq: Any = None
        self._built_rows = -1
        self._mean32: np.ndarray | None = None
        self.store_kind = store
        self.pq_eta = float(pq_eta) if pq_eta is not None else (4.0 if store == "codes" else 1.0)
        self._vectors_absent = False  # a loaded "codes" index: no token store until one is needed

    # ---- build --------------------------------------------------------------------
    def _train(self, v: np.ndarray) -> np.ndarray:
        """Train the centroids (faiss k-means) and the residual PQ on a sample; returns the centroids."""
        faiss = faiss_module()
        m = v.shape[1]
        rng = np.random.default_rng(0)
        take = np.sort(rng.choice(len(v), min(len(v), self.train_tokens), replace=False))
        sample = np.asarray(v[take], np.float32)
        nlist = min(self.nlist or default_nlist(len(v)), len(sample))
        km = faiss.Kmeans(m, nlist, niter=10, seed=1, spherical=False, min_points_per_centroid=1)
        km.train(sample)
        self.nlist = nlist
        cent = np.ascontiguousarray(km.centroids, np.float32)
        # 8-bit codes; fewer bits when the sample is too small to train 256 codewords per sub-space
        self.pq_bits = int(min(8, max(1, math.floor(math.log2(max(2, len(sample) // 39))))))
        default_m = max(
            1, m // (4 if self.store_kind == "codes" else 8)
        )  # codes: the final re-score reads them
        pq = faiss.ProductQuantizer(m, _pq_m(m, self.pq_m or default_m), self.pq_bits)
        pq.train(np.ascontiguousarray(sample - cent[self._assign(cent, sample)]))
        self.pq_m, self._pq = pq.M, pq
        self._codes = {"centroids": cent}
        return cent

    @staticmethod
    def _assign(cent: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Nearest centroid (inner product, as ColBERT's normalised vectors) of every row, in blocks
        of rows whose (block, nlist) score matrix stays near 64 MB whatever the centroid count."""
        block = max(256, 2**24 // max(1, len(cent)))
        out = np.empty(len(x), np.int32)
        for a in range(0, len(x), block):
            out[a : a + block] = np.argmax(np.asarray(x[a : a + block], np.float32) @ cent.T, axis=1)
        return out

    def _build(self) -> dict[str, np.ndarray]:
        """Assign and encode every token (trains on the first build), then the inverted lists."""
        if self._codes is not None and self._built_rows == self.idmap.n_rows and not self._pending:
            return self._codes
        v, s, off = self.store
        with _faiss_one_thread():
            return self._encode_all(v, s, off)

    def _encode_all(self, v: np.ndarray, s: np.ndarray | None, off: np.ndarray) -> dict[str, np.ndarray]:
        """Centroid id and PQ residual code of every token (training first if needed), inverted lists."""
        if self._codes is None or self._pq is None:
            cent = self._train(self._decode(v, s) if s is not None else v)
        else:
            cent = self._codes["centroids"]
        cid = np.empty(len(v), np.int32)
        codes = np.empty((len(v), self._pq.code_size), np.uint8)
        for a in range(0, len(v), 65536):
            x = self._decode(v[a : a + 65536], None if s is None else s[a : a + 65536])
            cid[a : a + 65536] = self._assign(cent, x)
            res = np.ascontiguousarray(x - cent[cid[a : a + 65536]])
            codes[a : a + 65536] = (
                anisotropic_codes(self._pq, res, x, self.pq_eta)
                if self.pq_eta > 1 and self._pq.nbits == 8
                else self._pq.compute_codes(res)
            )
        if self.store_kind == "codes":  # from the codes: what a loaded index recomputes (none saved)
            doc_mean = self._code_means(codes, off)
        else:
            doc_mean = self._doc_means(v, s, off, cent, cid)
        doc = np.repeat(np.arange(self.idmap.n_rows, dtype=np.int32), np.diff(off))
        pairs = np.unique(cid.astype(np.int64) * self.idmap.n_rows + doc)  # (centroid, doc), sorted
        ivf_ptr = np.searchsorted(pairs // max(1, self.idmap.n_rows), np.arange(len(cent) + 1))
        self._codes = {
            "centroids": cent,
            "token_cid": cid.astype(np.uint16 if len(cent) <= 65536 else np.int32),
            "codes": codes,
            "ivf_ptr": ivf_ptr.astype(np.int64),
            "ivf_docs": (pairs % max(1, self.idmap.n_rows)).astype(np.int32),
            "doc_mean": doc_mean.astype(np.float16),
        }
        self._mean32 = doc_mean.astype(np.float16).astype(np.float32)  # as a loaded index reads it
        self._built_rows = self.idmap.n_rows
        return self._codes

    def _doc_means(
        self, v: np.ndarray, s: np.ndarray | None, off: np.ndarray, cent: np.ndarray, cid: np.ndarray
    ) -> np.ndarray:
        """(N, M) float32 mean token residual ``mean_j (x_j - C[cid_j])`` of every document (0 for an
        empty one), in chunks of tokens: the centroid interaction adds ``<sum_i q_i, mean>``."""

        def residuals(a: int, b: int) -> np.ndarray:
            return self._decode(v[a:b], None if s is None else s[a:b]) - cent[np.asarray(cid[a:b], np.int64)]

        return _segment_means(residuals, off, v.shape[1] if v.ndim == 2 else int(self.m or 0))

    def _code_means(self, codes: np.ndarray, off: np.ndarray) -> np.ndarray:
        """(N, M) float32 mean decoded PQ residual of every document: a store="codes" index's
        document means, recomputed from its codes at load instead of being saved."""
        pq = self._pq
        return _segment_means(lambda a, b: pq.decode(np.ascontiguousarray(codes[a:b])), off, int(self.m or 0))

    def _means(self, c: dict[str, np.ndarray]) -> np.ndarray:
        """The float32 document mean residuals of ``c`` (float16 in the index), converted once."""
        mean = self._mean32
        if mean is None or len(mean) != len(c["doc_mean"]):
            mean = self._mean32 = np.asarray(c["doc_mean"], np.float32)
        return mean

    # ---- token store / decoded codes ------------------------------------------------
    @property
    def store(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """As :attr:`MultiVectorIndex.store`; a loaded "codes" index (no token store saved) first
        rebuilds its tokens from their codes (centroid + PQ residual), once."""
        if self._vectors_absent and self._store is not None:
            off = self._store[2]
            if self._codes is not None and "codes" in self._codes:
                x, sc = self._encode(self._decoded(np.arange(int(off[-1])), self._codes))
            else:
                x, sc = self._encode(np.zeros((0, int(self.m or 0)), np.float32))
            self._store, self._vectors_absent = (x, sc, off), False
        return MultiVectorIndex.store.fget(self)  # type: ignore[attr-defined]

    def _offsets(self) -> np.ndarray:
        """(N+1,) token offsets of the documents, without rebuilding an absent token store."""
        if self._store is not None and not self._pending:
            return self._store[2]
        return self.store[2]

    def _decoded(self, tok: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
        """(len(tok), M) float32 tokens ``tok`` rebuilt as centroid + decoded PQ residual."""
        tok = np.asarray(tok, np.int64)
        cent = c["centroids"][np.asarray(c["token_cid"][tok], np.int64)]
        return cent + self._pq.decode(np.ascontiguousarray(c["codes"][tok]))

    def _code_scores(self, qs: list[np.ndarray], rows: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
        """(Q, C) MaxSim of query i with document rows ``rows[i]`` (-1 -> nan) over their decoded
        tokens: the distinct documents' tokens are decoded once into a compact store."""
        off = self._offsets()
        docs, inv = np.unique(rows[rows >= 0], return_inverse=True)
        if not len(docs):
            return np.full(rows.shape, np.nan, np.float32)
        lens = off[docs + 1] - off[docs]
        loff = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)  # (D+1,) compact offsets
        tok = np.repeat(off[docs] - loff[:-1], lens) + np.arange(loff[-1])  # (T,) their token rows
        local = np.full(rows.shape, -1, np.int64)
        local[rows >= 0] = inv.reshape(-1)
        return maxsim_rerank_rows(qs, local, self._decoded(tok, c), loff, None)

    def score_rows(self, queries: Any, rows: np.ndarray) -> np.ndarray:
        """(Q, C) MaxSim of query i with document rows ``rows[i]`` (-1 or dead -> nan): from the
        token store, or with ``store="codes"`` from the decoded codes."""
        if self.store_kind != "codes" or not self.idmap.n_rows:
            return super().score_rows(queries, rows)
        qs = _as_list(queries, "queries", self.m)
        rows = np.asarray(rows, np.int64).reshape(len(qs), -1)
        rows = np.where((rows >= 0) & self.idmap.alive[np.maximum(rows, 0)], rows, -1)
        return self._code_scores(qs, rows, self._build())

    def doc_vectors(self, row: int) -> np.ndarray:
        """(T_d, M) float32 token vectors of ``row`` (decoded from codes when no token store is loaded)."""
        if not self._vectors_absent or self._codes is None or self._pending:
            return super().doc_vectors(row)
        off = self._offsets()
        return self._decoded(np.arange(off[row], off[row + 1]), self._codes)

    def commit(self, ids: list[str], xs: list[np.ndarray]) -> None:
        super().commit(ids, xs)
        self._built_rows = -1  # codes and lists are rebuilt (centroids and PQ kept) on next search

    def compact(self) -> None:
        if self._vectors_absent:
            self.store  # noqa: B018  (tokens rebuilt from codes before the rows are re-added)
        super().compact()
        self._built_rows = -1

    # ---- search -------------------------------------------------------------------
    def _candidates(
        self, q: np.ndarray, c: dict[str, np.ndarray], buf: tuple[np.ndarray, ...] | None = None, tag: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stages 2-3 for one (Tq, M) query: the documents of each query token's ``nprobe`` best
        centroids, scored by the centroid interaction (numba kernel). Returns (rows, scores); with
        ``buf`` (stamp, rows, scores buffers of N entries, reused across queries) they are views of it."""
        from embforge.index._plaid_kernel import centroid_interaction  # lazy-import: needs numba

        n_rows = self.idmap.n_rows
        if buf is None:
            buf = (np.zeros(n_rows, np.int32), np.empty(n_rows, np.int32), np.empty(n_rows, np.float32))
        stamp, out_rows, out_sc = buf
        st = np.ascontiguousarray((q @ c["centroids"].T).T)  # (nlist, Tq)
        nprobe = min(self.nprobe, st.shape[0])
        probe = np.unique(np.argpartition(-st, nprobe - 1, axis=0)[:nprobe])  # (P,) probed centroids
        ptr, docs, cid = c["ivf_ptr"], c["ivf_docs"], c["token_cid"]
        qsum = np.asarray(q, np.float32).sum(axis=0)
        n = centroid_interaction(
            st,
            probe,
            ptr,
            docs,
            self._offsets(),
            cid,
            self.idmap.alive,
            stamp,
            tag,
            out_rows,
            out_sc,
            qsum,
            self._means(c),
        )
        return out_rows[:n], out_sc[:n]

    def _lut(self, q: np.ndarray) -> np.ndarray:
        """(pq_m, ksub, Tq) float32 ``<q_t[sub m], codeword>`` lookup tables of query tokens (Tq, M)."""
        pq = self._pq
        cb = faiss_module().vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
        qs = np.ascontiguousarray(
            q.reshape(len(q), pq.M, pq.dsub).transpose(1, 2, 0), np.float32
        )  # (pq_m, dsub, Tq)
        return np.ascontiguousarray(np.matmul(cb, qs))  # (pq_m, ksub, Tq): one batched BLAS product

    def _decompressed(self, q: np.ndarray, cand: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
        """Stage 4 of one query: MaxSim over centroid + PQ residual reconstructions of the candidates' tokens:
        by lookup tables (numba) for 8-bit codes, else by decoding them (bit-packed codes)."""
        if self.pq_bits == 8:
            from embforge.index._plaid_kernel import residual_interaction  # lazy-import: needs numba

            lut = self._lut(q)
            st = np.ascontiguousarray((q @ c["centroids"].T).T)  # (nlist, Tq)
            out = np.empty(len(cand), np.float32)
            residual_interaction(
                st, lut, cand, self._offsets(), c["token_cid"], c["codes"], out, np.ones(len(st), np.bool_)
            )
            return out / max(1, len(q))
        idx, lens = padded_token_index(cand, self._offsets())
        flat = idx.reshape(-1)
        x = c["centroids"][c["token_cid"][flat]] + self._pq.decode(np.ascontiguousarray(c["codes"][flat]))
        qp, ql = pad_queries([q])
        return maxsim_padded(qp, ql, x.reshape(1, *idx.shape, -1), lens[None])[0]

    @staticmethod
    def _blocks(qs: list[np.ndarray], nlist: int) -> Iterator[list[np.ndarray]]:
        """Consecutive queries whose (tokens, nlist) float32 score matrix stays near 32 MB."""
        a = 0
        while a < len(qs):
            b, tokens = a, 0
            while b < len(qs) and (b == a or (tokens + len(qs[b])) * nlist <= 2**23):
                tokens += len(qs[b])
                b += 1
            yield qs[a:b]
            a = b

    def _shortlists(self, qs: list[np.ndarray], c: dict[str, np.ndarray], keep: int) -> list[np.ndarray]:
        """Stages 2-4 of every query: stages 2-3 in one parallel numba kernel per block of queries
        (``n_threads`` threads, 0 = one per core), stage 4 (when ``keep`` < ``ndocs``) per query."""
        import numba  # lazy-import: numba is needed only by searches

        from embforge.index._plaid_kernel import centroid_shortlists  # lazy-import: needs numba

        off = self._offsets()
        cent, found, mean = c["centroids"], [], self._means(c)
        threads = self.n_threads or os.cpu_count() or 1
        stage4 = keep < self.ndocs and self.pq_bits == 8  # in the kernel (by lookup tables)
        before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
        try:
            for block in self._blocks(qs, len(cent)):
                q_off = np.concatenate([[0], np.cumsum([len(q) for q in block])]).astype(np.int64)
                out = np.empty((len(block), self.ndocs), np.int64)
                n = np.zeros(len(block), np.int64)
                qcat = np.concatenate(block)  # (T, M)
                lut = self._lut(qcat) if stage4 else np.zeros((1, 1, len(qcat)), np.float32)
                qsum = np.stack([q.sum(axis=0) for q in block]).astype(np.float32)  # (Q, M)
                centroid_shortlists(
                    qcat @ cent.T, q_off, qsum, mean, min(self.nprobe, len(cent)), c["ivf_ptr"], c["ivf_docs"], off,
                    c["token_cid"], self.idmap.alive, self.ndocs, keep if stage4 else self.ndocs, lut, c["codes"], out, n,
                    -np.inf if self.t_cs is None else self.t_cs,
                )  # fmt: skip
                found += [out[i, : n[i]] for i in range(len(block))]
        finally:
            numba.set_num_threads(before)
        for i, (q, cand) in enumerate(zip(qs, found)):
            if len(cand) > keep:  # stage 4 of bit-packed (< 8-bit) codes: by decoding them
                s = self._decompressed(q, cand, c)
                found[i] = cand[np.argpartition(-s, keep - 1)[:keep]]
        return found

    def search_rows(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query: stages 2-4 per query, then one batched exact MaxSim re-rank of
        every query's shortlist from the (memory-mapped) token store."""
        k = check_k(k)
        qs = _as_list(queries, "queries", self.m)
        n_rows = self.idmap.n_rows
        if n_rows == 0 or not qs:
            return np.full((len(qs), 0), -1, np.int64), np.zeros((len(qs), 0), np.float32)
        c = self._build()
        codes = self.store_kind == "codes"
        keep = max(k, self.exact) if self.exact or codes else max(k, self.ndocs)
        found = self._shortlists(qs, c, keep)
        rows = np.full((len(qs), max(1, max(len(r) for r in found))), -1, np.int64)
        for i, r in enumerate(found):
            rows[i, : len(r)] = r
        if codes:  # final re-score: MaxSim over the shortlist's decoded tokens
            vals = np.nan_to_num(self._code_scores(qs, rows, c), nan=-np.inf)
        elif self.exact:
            v, sc, off = self.store
            vals = np.nan_to_num(maxsim_rerank_rows(qs, rows, v, off, sc), nan=-np.inf)
        else:
            vals = np.full(rows.shape, -np.inf, np.float32)
            for i, (q, r) in enumerate(zip(qs, found)):
                vals[i, : len(r)] = self._decompressed(q, r, c) if len(r) else vals[i, :0]
        top, tv = topk(vals, k)
        return np.take_along_axis(rows, top, axis=1), tv

    def search(self, queries: Any, k: int = 10) -> Hits:
        rows, vals = self.search_rows(queries, k)
        return hits_from_rows(self.idmap, np.where(np.isfinite(vals), rows, -1), vals)

    def nbytes(self) -> dict[str, int]:
        """Bytes of the in-memory compressed structures and of the on-disk exact token store."""
        c = self._build()
        off = self._offsets()
        exact = 0
        if self.store_kind == "vectors":
            v, s, _ = self.store
            exact = int(np.asarray(v).nbytes + (0 if s is None else np.asarray(s).nbytes))
        return {
            "compressed": int(sum(np.asarray(a).nbytes for a in c.values()) + np.asarray(off).nbytes),
            "exact_store": exact,
        }

    # ---- persistence --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "ndocs": self.ndocs,
            "exact": self.exact,
            "pq_m": self.pq_m,
            "train_tokens": self.train_tokens,
            "dtype": self.dtype,
            "pq_bits": self.pq_bits,
            "n_threads": self.n_threads,
            "t_cs": self.t_cs,
            "store": self.store_kind,
            "pq_eta": self.pq_eta,
        }

    def _write(self, d: Path) -> None:
        built = self._build() if self.idmap.n_rows else {}  # first: training fixes nlist and the PQ
        if self.store_kind == "codes":  # no token store: offsets, ids and the codes below
            save_array(d, "offsets", self._offsets())
            self.idmap.save(d)
            write_manifest(d, self.kind, self.config(), dim=self.m, count=len(self))
        else:
            super()._write(d)
        for name, a in built.items():
            if not (name == "doc_mean" and self.store_kind == "codes"):  # recomputed from the codes at load
                save_array(d, f"plaid_{name}", a)
        if built:
            save_array(d, "plaid_pq", faiss_module().vector_to_array(self._pq.centroids))

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> PlaidIndex:
        idx = cls._from_config(d, manifest)  # unknown keys or bad values: CheckpointError
        if idx.store_kind == "codes":
            idx._read_code_store(d, manifest)
        else:
            base = MultiVectorIndex._read(d, {**manifest, "config": {"dtype": idx.dtype}}, mmap)
            idx.idmap, idx.m, idx._store = base.idmap, base.m, base._store
        if idx.store_kind == "codes" and idx.idmap.n_rows and not (d / "plaid_pq.npy").exists():
            raise CheckpointError(
                f"{d / 'plaid_pq.npy'} is missing: a store='codes' index keeps its tokens only as codes; rebuild it"
            )
        if (d / "plaid_pq.npy").exists():
            names = ("centroids", "token_cid", "codes", "ivf_ptr", "ivf_docs")
            idx._codes = {n: load_array(d, f"plaid_{n}", mmap and n != "centroids") for n in names}
            idx._pq = idx._check_codes(d, idx._codes, np.asarray(load_array(d, "plaid_pq", False)))
            if idx.store_kind == "codes":
                idx._codes["doc_mean"] = idx._code_means(idx._codes["codes"], idx._offsets()).astype(
                    np.float16
                )
            elif (d / "plaid_doc_mean.npy").exists():
                idx._codes["doc_mean"] = load_array(d, "plaid_doc_mean", False)
                check_array(d, "plaid_doc_mean", idx._codes["doc_mean"], "f", 2, idx.idmap.n_rows)
                if idx._codes["doc_mean"].shape[1] != idx.m:
                    raise CheckpointError(
                        f"{d / 'plaid_doc_mean.npy'}: shape {idx._codes['doc_mean'].shape}, expected "
                        f"({idx.idmap.n_rows}, {idx.m}) (documents x token dim); the index is corrupt or hostile, rebuild it"
                    )
            else:  # written before the document mean residuals existed: computed from the token store
                v, sc, off = idx.store
                cent, cid = idx._codes["centroids"], idx._codes["token_cid"]
                idx._codes["doc_mean"] = idx._doc_means(v, sc, off, cent, cid).astype(np.float16)
            idx._built_rows = idx.idmap.n_rows
        return idx

    def _read_code_store(self, d: Path, manifest: dict[str, Any]) -> None:
        """ids, dim and token offsets of a store="codes" index (no vectors.npy): the token count
        is checked against the codes by :meth:`_check_codes`."""
        self.idmap, self.m = IdMap.load(d), manifest.get("dim")
        off = np.asarray(load_array(d, "offsets", False))
        check_array(d, "offsets", off, "iu", 1, self.idmap.n_rows + 1)
        n_tokens = int(off[-1]) if len(off) else 0
        check_offsets(d, "offsets", off, self.idmap.n_rows, n_tokens)
        if self.idmap.n_rows and (not isinstance(self.m, int) or isinstance(self.m, bool) or self.m < 1):
            raise CheckpointError(
                f"{d / 'index.json'}: dim {self.m!r} is not a positive int; the index is corrupt, rebuild it"
            )
        self._store, self._vectors_absent = (
            (np.zeros((0, int(self.m or 0)), self.dtype), None, off.astype(np.int64)),
            True,
        )

    def _check_codes(self, d: Path, c: dict[str, np.ndarray], pq_centroids: np.ndarray) -> Any:
        """Shapes, dtypes and bounds of the loaded PLAID arrays (they index each other and feed
        faiss, which checks nothing: an out-of-range centroid id or document row would read past an
        array); returns the residual product quantizer. Raises CheckpointError naming the file."""
        m, n_tokens, n_rows = int(self.m or 0), int(self._offsets()[-1]), self.idmap.n_rows
        if m < 1 or m % int(self.pq_m or 0):
            raise CheckpointError(
                f"{d / 'index.json'}: pq_m={self.pq_m} does not divide the token dim {m}; the index is "
                "corrupt or hostile, rebuild it"
            )
        check_array(d, "plaid_centroids", c["centroids"], "f", 2)
        nlist = len(c["centroids"])
        if c["centroids"].shape[1] != m or nlist < 1 or (self.nlist is not None and nlist != self.nlist):
            raise CheckpointError(
                f"{d / 'plaid_centroids.npy'}: shape {c['centroids'].shape}, expected ({self.nlist}, {m}) "
                "(nlist x token dim); the index is corrupt or hostile, rebuild it"
            )
        check_array(d, "plaid_token_cid", c["token_cid"], "iu", 1, n_tokens)
        check_bounds(d, "plaid_token_cid", c["token_cid"], nlist)
        check_offsets(d, "plaid_ivf_ptr", c["ivf_ptr"], nlist, len(c["ivf_docs"]))
        check_bounds(d, "plaid_ivf_docs", c["ivf_docs"], n_rows)
        faiss = faiss_module()
        pq = faiss.ProductQuantizer(m, int(self.pq_m or 1), self.pq_bits)
        check_array(d, "plaid_codes", c["codes"], "u", 2, n_tokens)
        if c["codes"].dtype != np.uint8 or c["codes"].shape[1] != pq.code_size:
            raise CheckpointError(
                f"{d / 'plaid_codes.npy'}: {c['codes'].dtype} codes of {c['codes'].shape[1]} bytes, expected "
                f"uint8 codes of {pq.code_size} bytes; the index is corrupt or hostile, rebuild it"
            )
        want = pq.M * pq.ksub * pq.dsub
        check_array(d, "plaid_pq", pq_centroids, "f", pq_centroids.ndim)
        if pq_centroids.size != want:
            raise CheckpointError(
                f"{d / 'plaid_pq.npy'}: {pq_centroids.size} values, expected {want} (pq_m x 2^pq_bits x "
                "dim / pq_m); the index is corrupt or hostile, rebuild it"
            )
        faiss.copy_array_to_vector(np.ascontiguousarray(pq_centroids.ravel(), np.float32), pq.centroids)
        return pq
