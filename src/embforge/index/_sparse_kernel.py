"""numba kernel of SparseIndex search (kept apart so numba is imported only on first search).

For each query: walk the postings of its terms, accumulate ``w_q * w_d`` into a
score buffer, remember the touched documents, then keep the best k of the touched
live documents in a size-k heap (ties -> lower row). Buffers are allocated once
per chunk of queries; chunks run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _better(v1, r1, v2, r2):
    return v1 > v2 or (v1 == v2 and r1 < r2)


@njit(cache=True)
def _sift_down(hv, hr, size):
    i = 0
    while True:
        left, right, w = 2 * i + 1, 2 * i + 2, i
        if left < size and _better(hv[w], hr[w], hv[left], hr[left]):
            w = left
        if right < size and _better(hv[w], hr[w], hv[right], hr[right]):
            w = right
        if w == i:
            return
        hv[i], hv[w] = hv[w], hv[i]
        hr[i], hr[w] = hr[w], hr[i]
        i = w


@njit(cache=True)
def _sift_up(hv, hr, i):
    while i > 0:
        p = (i - 1) // 2
        if _better(hv[p], hr[p], hv[i], hr[i]):
            hv[p], hv[i] = hv[i], hv[p]
            hr[p], hr[i] = hr[i], hr[p]
            i = p
        else:
            return


@njit(cache=True, inline="always")
def _offer(hv, hr, size, k, v, d):
    """Offer (v, d) to the size-k heap whose root is the worst kept item; returns the new size."""
    if size < k:
        hv[size] = v
        hr[size] = d
        _sift_up(hv, hr, size)
        return size + 1
    if v >= hv[0] and _better(v, d, hv[0], hr[0]):
        hv[0] = v
        hr[0] = d
        _sift_down(hv, hr, size)
    return size


@njit(cache=True, parallel=True, nogil=True)
def search_kernel(q_indptr, q_indices, q_values, col_ptr, doc_rows, weights, alive, n_docs, k, n_chunks):
    """Returns (rows (Q, k) int64 with -1 padding, scores (Q, k) float32 with -inf padding).

    Per query: if the query's postings touch few documents (< n_docs / 8), remember the touched
    ones and select among them; otherwise accumulate branch-free and scan the score buffer
    sequentially (cache-friendly, like bm25s), resetting it as it goes.
    """
    nq = len(q_indptr) - 1
    n_terms = len(col_ptr) - 1
    out_r = np.full((nq, k), -1, np.int64)
    out_v = np.full((nq, k), -np.inf, np.float32)
    per = (nq + n_chunks - 1) // n_chunks
    for c in prange(n_chunks):
        acc = np.zeros(n_docs, np.float32)
        touched = np.empty(n_docs, np.int32)
        hv = np.empty(k, np.float32)
        hr = np.empty(k, np.int64)
        for qi in range(c * per, min(nq, (c + 1) * per)):
            total = 0
            for p in range(q_indptr[qi], q_indptr[qi + 1]):
                t = q_indices[p]
                if q_values[p] > 0.0 and 0 <= t < n_terms:
                    total += col_ptr[t + 1] - col_ptr[t]
            size = 0
            if total * 8 < n_docs:
                nt = 0
                for p in range(q_indptr[qi], q_indptr[qi + 1]):
                    t = q_indices[p]
                    wq = q_values[p]
                    if wq <= 0.0 or t < 0 or t >= n_terms:
                        continue
                    for j in range(col_ptr[t], col_ptr[t + 1]):
                        d = doc_rows[j]
                        if acc[d] == 0.0:  # weights are > 0, so 0 means "not touched yet"
                            touched[nt] = d
                            nt += 1
                        acc[d] += wq * weights[j]
                for u in range(nt):
                    d = touched[u]
                    v = acc[d]
                    acc[d] = 0.0
                    if alive[d]:
                        size = _offer(hv, hr, size, k, v, d)
            else:
                for p in range(q_indptr[qi], q_indptr[qi + 1]):
                    t = q_indices[p]
                    wq = q_values[p]
                    if wq <= 0.0 or t < 0 or t >= n_terms:
                        continue
                    for j in range(col_ptr[t], col_ptr[t + 1]):
                        acc[doc_rows[j]] += wq * weights[j]
                # rows ascend, so a later equal score never beats a kept one: "v > thr" is exact;
                # the reset is unconditional and the branch is almost never taken (predictable)
                thr = np.float32(0.0)
                for d in range(n_docs):
                    v = acc[d]
                    acc[d] = 0.0
                    if v > thr and alive[d]:
                        size = _offer(hv, hr, size, k, v, d)
                        if size == k:
                            thr = hv[0]
            for pos in range(size - 1, -1, -1):  # pop worst first, fill from the back
                out_v[qi, pos] = hv[0]
                out_r[qi, pos] = hr[0]
                size -= 1
                hv[0] = hv[size]
                hr[0] = hr[size]
                _sift_down(hv, hr, size)
    return out_r, out_v


@njit(cache=True, parallel=True, nogil=True)
def score_rows_kernel(q_indptr, q_indices, q_values, rows, ok, indptr, indices, values, vocab, n_chunks):
    """(Q, C) float32 ``sum_t w_qt * w_dt`` of query i with document rows ``rows[i]`` (nan where not ``ok``).

    Per query: scatter its weights into a dense vocabulary buffer, walk each candidate's
    forward (CSR) terms summing ``w_dt * buffer[t]`` (float64), then clear the buffer; chunks
    of queries run in parallel, one buffer per chunk.
    """
    nq, c = rows.shape
    out = np.full((nq, c), np.nan, np.float32)
    per = (nq + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        buf = np.zeros(vocab, np.float64)
        for qi in range(ch * per, min(nq, (ch + 1) * per)):
            for p in range(q_indptr[qi], q_indptr[qi + 1]):
                t = q_indices[p]
                if 0 <= t < vocab:
                    buf[t] += q_values[p]
            for j in range(c):
                if not ok[qi, j]:
                    continue
                r = rows[qi, j]
                s = 0.0
                for p in range(indptr[r], indptr[r + 1]):
                    t = indices[p]
                    if 0 <= t < vocab:
                        s += values[p] * buf[t]
                out[qi, j] = s
            for p in range(q_indptr[qi], q_indptr[qi + 1]):
                t = q_indices[p]
                if 0 <= t < vocab:
                    buf[t] = 0.0
    return out
