"""numba kernel of PlaidIndex candidate generation (kept apart so numba is imported only on first search).

PLAID (Santhanam et al., 2022), stages 1-2 on the centroid ids of every token: the documents of
the probed centroids' inverted lists are the candidates, each scored once by the centroid
interaction ``sum_i max_{j in doc} S[cid_j, i]`` (``S`` = centroid-query scores), i.e. MaxSim with
every token replaced by its centroid, without decompressing anything.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def centroid_interaction(st, probe, ivf_ptr, ivf_docs, offsets, token_cid, alive, stamp, tag, out_rows, out_scores, qsum, doc_mean):  # noqa: PLR0913
    """Candidates of one query and their centroid-interaction scores; returns how many.

    Args:
        st: (nlist, Tq) float32 centroid-query scores (transposed: one centroid's row is contiguous).
        probe: (P,) probed centroid ids (unique).
        ivf_ptr, ivf_docs: the centroid -> document inverted lists (CSR).
        offsets, token_cid: (N+1,) token offsets of each document, (T_total,) centroid id of each token.
        alive: (N,) bool live rows.
        stamp, tag: (N,) int32 marks; a document is visited once per ``tag`` (no clearing between queries).
        out_rows, out_scores: (N,) outputs, filled in their first (returned) positions.
        qsum, doc_mean: (M,) sum of the query's tokens, (N, M) float32 mean token residual of each
            document (or (0, M): no term): the score adds ``<qsum, doc_mean[d]>`` (:func:`_mean_term`).
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
            out_scores[n] = best.sum() + _mean_term(qsum, doc_mean, d)
            n += 1
    return n


@njit(cache=True, nogil=True)
def _mean_term(qsum, doc_mean, d):
    """``<sum_i q_i, mean_j (x_j - C[cid_j])>``: what the document's mean token residual adds to
    every query token's best centroid score (0 without ``doc_mean`` rows). Tokens of one text share
    a context component that centroids do not keep; this restores it at one dot product a document."""
    if doc_mean.shape[0] == 0:
        return 0.0
    t = 0.0
    for k in range(len(qsum)):
        t += qsum[k] * doc_mean[d, k]
    return t


@njit(cache=True, nogil=True)
def residual_interaction(st, lut, rows, offsets, token_cid, codes, out, keepc):  # noqa: PLR0913
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
        keepc: (nlist,) bool: only tokens of these centroids get their residual added, the others
            score their centroid's score (PLAID's centroid pruning carried to this stage; all True:
            every token decompressed).
    """
    tq, pq_m = st.shape[1], lut.shape[0]
    best = np.empty(tq, np.float32)
    acc = np.empty(tq, np.float32)
    for r in range(len(rows)):
        d = rows[r]
        best[:] = -np.inf
        for j in range(offsets[d], offsets[d + 1]):
            c = token_cid[j]
            if not keepc[c]:
                for i in range(tq):
                    best[i] = max(best[i], st[c, i])
                continue
            for i in range(tq):
                acc[i] = st[c, i]
            for m in range(pq_m):
                t = codes[j, m]
                for i in range(tq):
                    acc[i] += lut[m, t, i]
            for i in range(tq):
                best[i] = max(best[i], acc[i])
        out[r] = best.sum() if offsets[d + 1] > offsets[d] else 0.0


@njit(cache=True, nogil=True)
def _probe(sq, nprobe, probed):
    """Mark in ``probed`` the ``nprobe`` best centroids of every query token (sq: (Tq, nlist))."""
    tv = np.empty(nprobe, np.float32)
    ti = np.empty(nprobe, np.int64)
    for i in range(sq.shape[0]):
        tv[:] = -np.inf
        ti[:] = -1
        for c in range(sq.shape[1]):
            v = sq[i, c]
            if v > tv[nprobe - 1]:  # insertion into the running top-nprobe
                k = nprobe - 1
                while k > 0 and tv[k - 1] < v:
                    tv[k] = tv[k - 1]
                    ti[k] = ti[k - 1]
                    k -= 1
                tv[k] = v
                ti[k] = c
        for k in range(nprobe):
            if ti[k] >= 0:
                probed[ti[k]] = True


@njit(cache=True, nogil=True)
def _keep_best(rows, sc, n, ndocs, out):
    """The ``ndocs`` rows of highest score among the first ``n`` into ``out``; returns how many."""
    if n <= ndocs:
        out[:n] = rows[:n]
        return n
    thr = np.partition(sc[:n], n - ndocs)[n - ndocs]  # the ndocs-th largest score
    m = 0
    for r in range(n):
        if sc[r] > thr:
            out[m] = rows[r]
            m += 1
    for r in range(n):
        if m >= ndocs:
            break
        if sc[r] == thr:  # ties at the threshold: in list order
            out[m] = rows[r]
            m += 1
    return m


@njit(cache=True, nogil=True)
def _kept_centroids(st, t_cs, keepc):
    """PLAID's centroid pruning: mark in ``keepc`` the centroids whose best score against any query
    token reaches ``t_cs`` (st: (nlist, Tq)); returns how many were kept."""
    n = 0
    for c in range(st.shape[0]):
        keepc[c] = False
        for i in range(st.shape[1]):
            if st[c, i] >= t_cs:
                keepc[c] = True
                n += 1
                break
    return n


@njit(cache=True, nogil=True)
def _interaction(st, rows, offsets, token_cid, keepc, floor, best, out, qsum, doc_mean):  # noqa: PLR0913
    """Centroid-interaction score of each document in ``rows`` into ``out``: ``sum_i max_j
    st[cid_j, i]`` over the tokens whose centroid is kept (``keepc``) + :func:`_mean_term`; a query
    token with no kept token counts ``floor`` (the pruning threshold: pruned centroids score below it)."""
    tq = st.shape[1]
    for r in range(len(rows)):
        d = rows[r]
        best[:] = -np.inf
        for j in range(offsets[d], offsets[d + 1]):
            c = token_cid[j]
            if not keepc[c]:
                continue
            for i in range(tq):
                v = st[c, i]
                if v > best[i]:
                    best[i] = v
        t = 0.0
        for i in range(tq):
            t += best[i] if best[i] > floor else floor
        out[r] = t + _mean_term(qsum, doc_mean, d)


@njit(cache=True, nogil=True, parallel=True)
def centroid_shortlists(s, q_off, qsum, doc_mean, nprobe, ivf_ptr, ivf_docs, offsets, token_cid, alive, ndocs, keep, lut, codes, out_rows, out_n, t_cs):  # noqa: PLR0913
    """Stages 1-4 of a block of queries in parallel (``prange`` over queries, one per core): each
    query token's ``nprobe`` best centroids, the documents of their lists as candidates, each
    scored once by the centroid interaction (+ the document's mean residual term,
    :func:`_mean_term`), the best ``ndocs`` kept; then, when ``keep`` < ``ndocs``, the best
    ``keep`` of those by centroid + PQ-residual MaxSim (lookup tables, as :func:`residual_interaction`).

    With ``t_cs`` > -inf, PLAID's centroid pruning (Santhanam et al., 2022, sec. 4.2): a centroid
    is kept when its best score against the query tokens reaches ``t_cs``; the centroid interaction
    reads only tokens of kept centroids (a query token without one counts ``t_cs``) and stage 4
    decompresses only their residuals (the others score their centroid). ``t_cs`` = -inf: no pruning.

    Args:
        s: (T, nlist) float32 query-token x centroid scores of the block (one BLAS product);
            query ``i`` owns rows ``q_off[i]:q_off[i+1]``.
        qsum: (Q, M) float32 sum of each query's tokens; doc_mean: (N, M) float32 mean token
            residual of each document, or (0, M) for none.
        nprobe: centroids probed per query token.
        ivf_ptr, ivf_docs, offsets, token_cid, alive: as in :func:`centroid_interaction`.
        ndocs: candidates kept per query by the centroid interaction.
        keep: candidates kept per query by the residual scores (>= ndocs: no residual stage).
        lut: (pq_m, ksub, T) float32 ``<q_t[sub m], codeword>`` of the block's query tokens;
            codes: (T_total, pq_m) uint8 residual codes (both unused when keep >= ndocs).
        out_rows: (Q, ndocs) int64 output rows; out_n: (Q,) int64 how many of each row are filled.
        t_cs: centroid score threshold of the pruning (-inf: no pruning).
    """
    n_rows, nlist = len(offsets) - 1, s.shape[1]
    for qi in prange(len(q_off) - 1):
        a, tq = q_off[qi], q_off[qi + 1] - q_off[qi]
        st = np.ascontiguousarray(s[a : a + tq].T)  # (nlist, Tq): a centroid's scores in one cache line
        probed = np.zeros(nlist, np.bool_)
        _probe(s[a : a + tq], nprobe, probed)
        keepc = np.ones(nlist, np.bool_)
        if t_cs > -np.inf:
            _kept_centroids(st, t_cs, keepc)
        seen = np.zeros(n_rows, np.bool_)
        rows = np.empty(n_rows, np.int64)
        sc = np.empty(n_rows, np.float32)
        best = np.empty(tq, np.float32)
        n = 0
        for p in range(nlist):
            if not probed[p]:
                continue
            for x in range(ivf_ptr[p], ivf_ptr[p + 1]):
                d = ivf_docs[x]
                if seen[d] or not alive[d]:
                    continue
                seen[d] = True
                rows[n] = d
                n += 1
        _interaction(st, rows[:n], offsets, token_cid, keepc, t_cs, best, sc[:n], qsum[qi], doc_mean)
        m = _keep_best(rows, sc, n, ndocs, out_rows[qi])
        if m > keep:  # stage 4 on the survivors
            lq = np.ascontiguousarray(lut[:, :, a : a + tq])  # (pq_m, ksub, Tq) of this query
            residual_interaction(st, lq, out_rows[qi, :m], offsets, token_cid, codes, sc[:m], keepc)
            rows[:m] = out_rows[qi, :m]
            m = _keep_best(rows, sc, m, keep, out_rows[qi])
        out_n[qi] = m
