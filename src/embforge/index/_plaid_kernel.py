"""numba kernel of PlaidIndex candidate generation (kept apart so numba is imported only on first search).

PLAID (Santhanam et al., 2022), stages 1-2 on the centroid ids of every token: the documents of
the probed centroids' inverted lists are the candidates, each scored once by the centroid
interaction ``sum_i max_{j in doc} S[cid_j, i]`` (``S`` = centroid-query scores), i.e. MaxSim with
every token replaced by its centroid, without decompressing anything.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def centroid_interaction(st, probe, ivf_ptr, ivf_docs, offsets, token_cid, alive, stamp, tag, out_rows, out_scores):  # noqa: PLR0913
    """Candidates of one query and their centroid-interaction scores; returns how many.

    Args:
        st: (nlist, Tq) float32 centroid-query scores (transposed: one centroid's row is contiguous).
        probe: (P,) probed centroid ids (unique).
        ivf_ptr, ivf_docs: the centroid -> document inverted lists (CSR).
        offsets, token_cid: (N+1,) token offsets of each document, (T_total,) centroid id of each token.
        alive: (N,) bool live rows.
        stamp, tag: (N,) int32 marks; a document is visited once per ``tag`` (no clearing between queries).
        out_rows, out_scores: (N,) outputs, filled in their first (returned) positions.
    """
    tq = st.shape[1]
    best = np.empty(tq, np.float32)
    n = 0
    for p in probe:
        for a in range(ivf_ptr[p], ivf_ptr[p + 1]):
            d = ivf_docs[a]
            if stamp[d] == tag or not alive[d]:
                continue
            stamp[d] = tag
            best[:] = -np.inf
            for j in range(offsets[d], offsets[d + 1]):
                c = token_cid[j]
                for i in range(tq):
                    v = st[c, i]
                    if v > best[i]:
                        best[i] = v
            out_rows[n] = d
            out_scores[n] = best.sum()
            n += 1
    return n


@njit(cache=True, nogil=True)
def residual_interaction(st, lut, rows, offsets, token_cid, codes, out):  # noqa: PLR0913
    """MaxSim (unnormalised sum over query tokens) of one query against the documents ``rows``
    with every token rebuilt as centroid + PQ residual, scored without rebuilding it: by lookup
    tables (asymmetric distance computation, Jegou et al., 2011, "Product quantization for nearest
    neighbor search"; PLAID's stage 4 on ColBERTv2's residual codes).

    Args:
        st: (nlist, Tq) float32 centroid-query scores.
        lut: (pq_m, ksub, Tq) float32 ``<q_i[sub m], codeword>`` tables.
        rows: (C,) document rows; offsets, token_cid: as in :func:`centroid_interaction`.
        codes: (T_total, pq_m) uint8 residual codes.
        out: (C,) float32 output.
    """
    tq, pq_m = st.shape[1], lut.shape[0]
    best = np.empty(tq, np.float32)
    acc = np.empty(tq, np.float32)
    for r in range(len(rows)):
        d = rows[r]
        best[:] = -np.inf
        for j in range(offsets[d], offsets[d + 1]):
            c = token_cid[j]
            for i in range(tq):
                acc[i] = st[c, i]
            for m in range(pq_m):
                t = codes[j, m]
                for i in range(tq):
                    acc[i] += lut[m, t, i]
            for i in range(tq):
                if acc[i] > best[i]:
                    best[i] = acc[i]
        out[r] = best.sum() if offsets[d + 1] > offsets[d] else 0.0
