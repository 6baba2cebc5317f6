"""numba kernel of the query-major MaxSim re-rank over float16 token storage (kept apart so
numba is imported only when a re-rank first uses it).

``s_mul(q, d) = (1 / N_q) * sum_i max_j <q_i, d_j>`` (ColBERT, Khattab and Zaharia, 2020) for
every (query, candidate row) pair, parallel over queries, without materialising a similarity
matrix: each candidate token is widened once (float16 bits -> float32 through a 65,536-entry
table, numba has no float16 type on the CPU) and dotted with every query token while the
running maxima stay in registers/L1. Measured against the batched-product (segment) form
over two runs (bench/results/search.md, run 5a): 0.49x-1.09x at the issue's shape (32 query
tokens, 8-39 document tokens), 1.06x-1.19x at the 100k projected shape: no clear win, so
``maxsim_rerank_rows`` runs it only when asked (``kernel="numba"``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def half_table() -> np.ndarray:
    """(65536,) float32: the value of every float16 bit pattern (index = the uint16 bits)."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _pair(qcat, a, tq, bits, lo, hi, table, buf, best):
    """MaxSim of query tokens ``qcat[a:a+tq]`` with document tokens ``bits[lo:hi]`` (both non-empty)."""
    m = bits.shape[1]
    best[:] = -np.inf
    for t in range(lo, hi):
        for x in range(m):
            buf[x] = table[bits[t, x]]
        for i in range(tq):
            s = np.float32(0.0)
            for x in range(m):
                s += qcat[a + i, x] * buf[x]
            if s > best[i]:
                best[i] = s
    total = np.float32(0.0)
    for i in range(tq):
        total += best[i]
    return total / tq


@njit(cache=True, parallel=True, nogil=True, fastmath=True)
def maxsim_rows_f16(qcat, qoff, rows, bits, offsets, table):
    """(Q, C) float32 MaxSim of query i (``qcat[qoff[i]:qoff[i+1]]``) with rows ``rows[i]``.

    ``bits`` (T_total, M) uint16 = the float16 token store viewed as uint16; rows -1 -> nan;
    a query or a document without tokens scores 0.
    """
    nq, c = rows.shape
    out = np.full((nq, c), np.nan, np.float32)
    for qi in prange(nq):
        a, b = qoff[qi], qoff[qi + 1]
        tq = b - a
        buf = np.empty(bits.shape[1], np.float32)
        best = np.empty(max(tq, 1), np.float32)
        for j in range(c):
            r = rows[qi, j]
            if r < 0:
                continue
            lo, hi = offsets[r], offsets[r + 1]
            if tq == 0 or hi == lo:
                out[qi, j] = 0.0
            else:
                out[qi, j] = _pair(qcat, a, tq, bits, lo, hi, table, buf, best)
    return out
