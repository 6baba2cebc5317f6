"""MaxSim, the late-interaction score of ColBERT (Khattab and Zaharia, 2020, "ColBERT:
Efficient and Effective Passage Search via Contextualized Late Interaction over BERT"),
as BGE-M3 uses it for its multi-vector head (Chen et al., 2024):

    s_mul(q, p) = (1 / N_q) * sum_i max_j <E_q[i], E_p[j]>

N_q is the number of (real) query tokens; padding never wins the max; a query or a
document without tokens scores 0. Every MaxSim in embforge is one of these forms:

* :func:`maxsim_scores` (torch, differentiable): padded (Q, Tq, M) x (N, Td, M) + masks.
* :func:`maxsim_flat` (numpy): token vectors concatenated with row offsets, one BLAS
  product per block; the kernel of the other numpy forms.
* :func:`multivector_list_scores` (numpy): lists of (T_i, M) arrays, all pairs (Q, N).
* :func:`maxsim_padded` (numpy): B queries each against its own C padded candidates, one
  batched BLAS product (PLAID's shortlist scoring).
* :func:`maxsim_segments` (numpy): B queries against their candidates' tokens laid out back to
  back (:func:`segment_token_index`), one batched product and one segment max; the kernel of
  :func:`maxsim_rerank_rows`, each query against its own candidate rows, gathered per query
  block straight from (memory-mapped) token storage (the multi-vector indexes).
* :func:`maxsim_by_document` (numpy + torch): the same pairs, document-major: each candidate
  document's tokens are read once and scored against the tokens of every query that holds it
  (one product per document); :func:`maxsim_rerank_rows` picks it when documents recur in many
  queries' candidate lists (evaluation over a small corpus), where gathering every candidate's
  long token matrix per query would move far more memory than the queries' short ones.
* :func:`maxsim_rerank` (numpy): the same over a ``gather`` callback (the mining teachers).

Shapes: Q queries, N documents, T tokens, M multi-vector dim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

__all__ = [
    "maxsim_scores",
    "pad_multivectors",
    "maxsim_flat",
    "stack_tokens",
    "multivector_list_scores",
    "maxsim_rerank",
    "maxsim_rerank_rows",
    "maxsim_padded",
    "pad_queries",
    "padded_token_index",
    "segment_token_index",
    "maxsim_segments",
    "maxsim_by_document",
    "MAXSIM_BLOCK",
    "DOC_MAJOR_PAIRS",
    "RERANK_KERNELS",
    "RERANK_BLOCK",
]

#: Bound on the (query tokens x document tokens) similarity block of the numpy forms (elements).
MAXSIM_BLOCK = 8_000_000
#: Bound on the gathered (queries x candidate tokens x M) elements of one re-rank block: small
#: enough that the gathered tokens and their similarities stay in cache (measured: 2M beats 8M).
RERANK_BLOCK = 2_000_000
#: :func:`maxsim_rerank_rows` scores document-major when the (query, candidate) pairs per distinct
#: candidate document reach this many: below it the per-document product is too small to pay
#: for its call (bench/results/eval_rerank.md: ~900 pairs per document there; ~1.6 in the 100k hybrid).
DOC_MAJOR_PAIRS = 16
#: The forms :func:`maxsim_rerank_rows` can run ("auto" picks one).
RERANK_KERNELS = ("auto", "segments", "document", "numba")


def maxsim_scores(
    q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """MaxSim of padded token tensors (torch, differentiable).

    Args:
        q: (Q, Tq, M), q_mask: (Q, Tq) 1 = real query token (N_q = its sum per query).
        d: (N, Td, M), d_mask: (N, Td) 1 = real document token; padding never wins the max.
        chunk: documents per step (bounds memory at Q*Tq*chunk*Td).

    Returns:
        (Q, N) scores.

    Example:
        >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]); d = torch.tensor([[[1.0, 0.0]]])
        >>> maxsim_scores(q, torch.ones(1, 2), d, torch.ones(1, 1))
        tensor([[0.5000]])
    """
    qm = q_mask.to(q.dtype)
    n_q = qm.sum(-1, keepdim=True).clamp(min=1.0)  # (Q, 1)
    out = []
    for s in range(0, d.shape[0], chunk):
        dc, dm = d[s : s + chunk], d_mask[s : s + chunk].bool()
        sim = torch.einsum("qim,njm->qinj", q, dc)  # (Q, Tq, n, Td)
        sim = sim.masked_fill(~dm[None, None], float("-inf"))
        best = sim.max(-1).values  # (Q, Tq, n)
        best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
        out.append((best * qm.unsqueeze(-1)).sum(1) / n_q)
    if not out:
        return q.new_zeros(q.shape[0], 0)
    return torch.cat(out, dim=1)


def pad_multivectors(vecs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """N arrays (T_i, M) -> padded (N, T, M) tensor and (N, T) mask (the input of :func:`maxsim_scores`)."""
    t = max((len(v) for v in vecs), default=0)
    m = vecs[0].shape[1] if len(vecs) else 0
    x = torch.zeros(len(vecs), max(t, 1), m)
    mask = torch.zeros(len(vecs), max(t, 1))
    for i, v in enumerate(vecs):
        x[i, : len(v)] = torch.from_numpy(np.asarray(v, dtype=np.float32))
        mask[i, : len(v)] = 1
    return x, mask


def stack_tokens(vecs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """N arrays (T_i, M) -> (sum T_i, M) float32 tokens and (N+1,) int64 row offsets."""
    lens = np.array([len(v) for v in vecs], np.int64)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    nonempty = [v for v in vecs if len(v)]
    if not nonempty:
        m = vecs[0].shape[1] if len(vecs) and np.ndim(vecs[0]) == 2 else 0
        return np.zeros((0, m), np.float32), off
    return np.concatenate(nonempty).astype(np.float32), off


def maxsim_flat(q_tok: np.ndarray, q_off: np.ndarray, d_tok: np.ndarray, d_off: np.ndarray) -> np.ndarray:
    """MaxSim of concatenated token vectors: one product, then per-document max and per-query mean.

    Args:
        q_tok: (sum Tq, M) query tokens, q_off: (Q+1,) offsets (query i = rows q_off[i]:q_off[i+1]).
        d_tok: (sum Td, M) document tokens, d_off: (N+1,) offsets.

    Returns:
        (Q, N) float32; a query or document without tokens scores 0.

    Example:
        >>> q = np.eye(2, dtype=np.float32); d = np.array([[1.0, 0.0]], np.float32)
        >>> maxsim_flat(q, np.array([0, 2]), d, np.array([0, 1]))
        array([[0.5]], dtype=float32)
    """
    q_off, d_off = np.asarray(q_off), np.asarray(d_off)
    qlen, dlen = np.diff(q_off), np.diff(d_off)
    out = np.zeros((len(qlen), len(dlen)), dtype=np.float32)
    qk, dk = qlen > 0, dlen > 0
    if not qk.any() or not dk.any():
        return out
    a, b = int(d_off[0]), int(d_off[-1])
    sim = q_tok[int(q_off[0]) : int(q_off[-1])] @ d_tok[a:b].T  # (sum Tq, sum Td)
    best = np.maximum.reduceat(sim, (d_off[:-1] - a)[dk], axis=1)  # (sum Tq, N with tokens)
    sums = np.add.reduceat(best, (q_off[:-1] - q_off[0])[qk], axis=0)  # (Q with tokens, N with tokens)
    out[np.ix_(np.flatnonzero(qk), np.flatnonzero(dk))] = sums / qlen[qk][:, None]
    return out


def _query_blocks(qlen: np.ndarray, doc_tokens: int, block: int) -> list[tuple[int, int]]:
    """Consecutive query ranges [i, j) whose (query tokens x doc_tokens) stays under ``block``."""
    spans, i = [], 0
    while i < len(qlen):
        j, tokens = i, 0
        while j < len(qlen) and (j == i or (tokens + qlen[j]) * doc_tokens <= block):
            tokens += qlen[j]
            j += 1
        spans.append((i, j))
        i = j
    return spans


def multivector_list_scores(
    q: Sequence[np.ndarray], d: Sequence[np.ndarray], block: int = MAXSIM_BLOCK
) -> np.ndarray:
    """MaxSim between lists of (T_i, M) token matrices (e.g. ``Embeddings.multivector``): (Q, N) float32.

    Queries are scored in blocks so the (query tokens x all document tokens) temporary
    stays under ``block`` elements.

    Example:
        >>> multivector_list_scores([np.eye(2, dtype=np.float32)], [np.array([[1.0, 0.0]], np.float32)])
        array([[0.5]], dtype=float32)
    """
    out = np.zeros((len(q), len(d)), dtype=np.float32)
    if not len(q) or not len(d):
        return out
    d_tok, d_off = stack_tokens(d)
    qlen = np.array([len(x) for x in q], np.int64)
    for i, j in _query_blocks(qlen, len(d_tok), block):
        q_tok, q_off = stack_tokens(q[i:j])
        out[i:j] = maxsim_flat(q_tok, q_off, d_tok, d_off)
    return out


def maxsim_padded(
    q: np.ndarray, q_len: np.ndarray, d: np.ndarray, d_len: np.ndarray, d_scale: np.ndarray | None = None
) -> np.ndarray:
    """MaxSim of B queries, each against its own C padded candidates: one batched product.

    The documents stay in their storage type until the product (float16 and int8 are
    widened by torch's vectorised casts, which beat numpy's float16 conversion several fold).

    Args:
        q: (B, Tq, M) float32 query tokens (zero padded), q_len: (B,) real query tokens.
        d: (B, C, Td, M) candidate tokens, float16/float32/int8; a padding position must repeat
            one of its document's tokens (as :func:`padded_token_index` lays them out), so it
            never changes the max; d_len: (B, C) real tokens per candidate (0 = scores 0).
        d_scale: (B, C, Td) per-token scale of int8 ``d`` (None for float tokens).

    Returns:
        (B, C) float32; a query or candidate without tokens scores 0.

    Example:
        >>> q = np.eye(2, dtype=np.float32)[None]; d = np.array([[[[1.0, 0.0], [1.0, 0.0]]]], np.float32)
        >>> maxsim_padded(q, np.array([2]), d, np.array([[1]]))
        array([[0.5]], dtype=float32)
    """
    b, c, td, m = d.shape
    tq = q.shape[1]
    if b == 0 or c == 0 or td == 0 or tq == 0:
        return np.zeros((b, c), np.float32)
    dt = torch.from_numpy(np.ascontiguousarray(d)).reshape(b, c * td, m).float()
    if d_scale is not None:
        dt *= torch.from_numpy(np.ascontiguousarray(d_scale, np.float32)).reshape(b, c * td, 1)
    d_len_t = torch.from_numpy(np.asarray(d_len, np.int64))
    qt = torch.from_numpy(np.ascontiguousarray(q, np.float32))
    sim = torch.bmm(qt, dt.transpose(1, 2))  # (B, Tq, C*Td): one batched BLAS product
    best = sim.view(b, tq, c, td).amax(dim=3)  # (B, Tq, C); zero padded query tokens add 0
    q_len_t = torch.from_numpy(np.asarray(q_len, np.int64)).clamp(min=1)
    out = best.sum(dim=1) / q_len_t[:, None]
    out.masked_fill_(d_len_t == 0, 0.0)  # candidates without tokens
    return out.numpy().astype(np.float32, copy=False)


def pad_queries(q: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """B arrays (Tq_i, M) -> (B, max Tq, M) float32 zero padded and (B,) lengths."""
    lens = np.array([len(x) for x in q], np.int64)
    m = next((np.shape(x)[1] for x in q if np.ndim(x) == 2), 0)
    out = np.zeros((len(q), int(lens.max(initial=0)), m), np.float32)
    for i, x in enumerate(q):
        out[i, : lens[i]] = x
    return out, lens


def padded_token_index(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat token positions (..., Td) of documents ``rows`` (-1 = none) and their lengths (...).

    ``offsets`` (N+1,) marks document r's tokens ``offsets[r]:offsets[r+1]``; padding
    positions repeat the document's first token (masked later by the lengths).
    """
    rows = np.asarray(rows, np.int64)
    ok = rows >= 0
    safe = np.where(ok, rows, 0)
    starts = np.asarray(offsets)[safe]
    lens = np.where(ok, np.asarray(offsets)[safe + 1] - starts, 0)
    td = int(lens.max(initial=0))
    step = np.arange(td)
    idx = starts[..., None] + np.where(step < lens[..., None], step, 0)
    return np.where(ok[..., None], idx, 0), lens


def segment_token_index(rows: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat token layout of B queries' candidate rows, each query's tokens in one segment.

    Query b's candidates' tokens are laid out back to back in the slots ``b*L : b*L + tot_b``
    (L = max tot_b + 1, so every query ends with at least one spare slot); spare slots point
    at token 0 and are never read as part of a candidate.

    Args:
        rows: (B, C) document rows, -1 = none (0 tokens).
        offsets: (N+1,) document r = tokens ``offsets[r]:offsets[r+1]``.

    Returns:
        src (B*L,) token positions to gather, bounds (B, C+1) the start slot of every candidate
        plus each query's end slot (nondecreasing: the ``np.maximum.reduceat`` indices), and
        lens (B, C) tokens per candidate.

    Example:
        >>> src, bounds, lens = segment_token_index(np.array([[1, 0]]), np.array([0, 2, 3]))
        >>> src.tolist(), bounds.tolist(), lens.tolist()
        ([2, 0, 1, 0], [[0, 1, 3]], [[1, 2]])
    """
    rows = np.asarray(rows, np.int64)
    offsets = np.asarray(offsets, np.int64)
    b, c = rows.shape
    ok = rows >= 0
    safe = np.where(ok, rows, 0)
    starts = offsets[safe]
    lens = np.where(ok, offsets[safe + 1] - starts, 0)  # (B, C)
    within = np.cumsum(lens, axis=1)  # (B, C) end of each candidate inside its query's segment
    width = int(within[:, -1].max(initial=0)) + 1 if c else 1
    seg_start = np.arange(b, dtype=np.int64)[:, None] * width
    bounds = np.concatenate([seg_start + within - lens, seg_start + within[:, -1:]], axis=1)  # (B, C+1)
    flat_len = lens.ravel()
    n = int(flat_len.sum())
    run = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(flat_len) - flat_len, flat_len)  # 0..len-1
    src = np.zeros(b * width, np.int64)
    src[np.repeat(bounds[:, :c].ravel(), flat_len) + run] = np.repeat(starts.ravel(), flat_len) + run
    return src, bounds, lens


def maxsim_segments(
    q: np.ndarray,
    q_len: np.ndarray,
    d: np.ndarray,
    bounds: np.ndarray,
    d_len: np.ndarray,
    d_scale: np.ndarray | None = None,
) -> np.ndarray:
    """MaxSim of B queries against their candidates laid out by :func:`segment_token_index`.

    One batched BLAS product (B, Tq, M) x (B, M, L) -> (B, Tq, L), then one 1-D
    ``np.maximum.reduceat`` over every (query token, candidate) run of contiguous
    similarities (segment max per document) and a sum over query tokens: no Python loop
    over candidates or queries.

    Args:
        q: (B, Tq, M) float32 zero-padded query tokens, q_len: (B,) real query tokens.
        d: (B*L, M) gathered tokens (float16/float32/int8), bounds: (B, C+1), d_len: (B, C).
        d_scale: (B*L,) per-token scale of int8 ``d`` (None for float tokens).

    Returns:
        (B, C) float32; a query or candidate without tokens scores 0.
    """
    b, tq = q.shape[:2]
    c = bounds.shape[1] - 1
    if b == 0 or c == 0 or tq == 0:
        return np.zeros((b, c), np.float32)
    width = len(d) // b
    dt = torch.from_numpy(np.ascontiguousarray(d)).float()  # torch's vectorised widening of float16/int8
    if d_scale is not None:
        dt *= torch.from_numpy(np.ascontiguousarray(d_scale, np.float32))[:, None]
    qt = torch.from_numpy(np.ascontiguousarray(q, np.float32))
    sim = torch.bmm(qt, dt.view(b, width, -1).transpose(1, 2))  # (B, Tq, L): one batched product
    local = bounds - np.arange(b, dtype=np.int64)[:, None] * width  # (B, C+1) inside each query's L
    starts = (np.arange(b * tq, dtype=np.int64) * width).reshape(b, tq, 1) + local[:, None, :]
    best = np.maximum.reduceat(sim.numpy().reshape(-1), starts.reshape(-1))  # (B*Tq*(C+1),)
    sums = best.reshape(b, tq, c + 1)[:, :, :c].sum(axis=1)  # (B, C); zero-padded query tokens add 0
    out = sums / np.maximum(np.asarray(q_len), 1)[:, None]
    return np.where(d_len > 0, out, 0.0).astype(np.float32)


def _pick_kernel(kernel: str, rows: np.ndarray, tokens: np.ndarray, scales: np.ndarray | None) -> str:
    """The re-rank form to run: ``kernel`` checked, or for "auto" document-major when the
    (query, candidate) pairs reach ``DOC_MAJOR_PAIRS`` per distinct document, else segments."""
    if kernel not in RERANK_KERNELS:
        raise ValueError(f"unknown re-rank kernel {kernel!r}; choose from: {', '.join(RERANK_KERNELS)}")
    if kernel == "numba" and (tokens.dtype != np.float16 or scales is not None):
        raise ValueError(f"the numba re-rank kernel reads float16 storage, got {tokens.dtype}")
    if kernel != "auto":
        return kernel
    live = rows[rows >= 0]
    return "document" if len(live) >= DOC_MAJOR_PAIRS * len(np.unique(live)) else "segments"


def _rows_f16_numba(q: Sequence[np.ndarray], rows: np.ndarray, tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The query-major re-rank of float16 storage by the numba kernel (no similarity matrix)."""
    from embforge.scoring import _maxsim_kernel as kern  # lazy-import: needs numba (~1.5 s import)

    n_docs = len(offsets) - 1
    if rows.size and (int(rows.max()) >= n_docs or int(offsets[-1]) > len(tokens)):
        raise IndexError(f"candidate row {int(rows.max())} or offsets beyond the {n_docs}-document store")
    m = tokens.shape[1]
    qcat = np.ascontiguousarray(np.concatenate([np.asarray(x, np.float32).reshape(-1, m) for x in q]))
    qoff = np.concatenate([[0], np.cumsum([len(x) for x in q])]).astype(np.int64)
    if _HALF[0] is None:
        _HALF[0] = kern.half_table()
    bits = np.asarray(tokens).view(np.uint16)  # a plain ndarray view of the (memory-mapped) store
    return kern.maxsim_rows_f16(qcat, qoff, np.ascontiguousarray(rows), bits, np.asarray(offsets), _HALF[0])


_HALF: list[np.ndarray | None] = [None]  # the float16 -> float32 table of the numba kernel, built once


def maxsim_by_document(
    q: Sequence[np.ndarray],
    rows: np.ndarray,
    tokens: np.ndarray,
    offsets: np.ndarray,
    scales: np.ndarray | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """MaxSim of query i against document rows ``rows[i]``, document-major.

    The (query, candidate) pairs are grouped by document; each document's tokens are read
    (and widened to float32) once, the tokens of every query holding it are gathered, and one
    product (sum T_q, M) x (M, T_d) with a max over the document's tokens and a segment sum
    per query gives all its scores. Same formula as :func:`maxsim_rerank_rows` (ColBERT's
    MaxSim, Khattab and Zaharia, 2020); it moves query tokens instead of document tokens, so
    it wins when few documents are each a candidate of many queries.

    Args and returns: as :func:`maxsim_rerank_rows`.

    Example:
        >>> tok = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> maxsim_by_document([np.eye(2, dtype=np.float32)], np.array([[1, -1]]), tok, np.array([0, 1, 2]))
        array([[0.5, nan]], dtype=float32)
    """
    rows = np.asarray(rows, np.int64).reshape(len(q), -1)
    out = np.full(rows.shape, np.nan, np.float32)
    flat = rows.reshape(-1)
    pair = np.flatnonzero(flat >= 0)
    if not len(pair):
        return out
    offsets = np.asarray(offsets, np.int64)
    qlen = np.array([len(x) for x in q], np.int64)
    qoff = np.concatenate([[0], np.cumsum(qlen)]).astype(np.int64)
    m = tokens.shape[1] if tokens.ndim == 2 else 0
    qcat = torch.from_numpy(np.concatenate([np.asarray(x, np.float32).reshape(-1, m) for x in q]))
    pair = pair[np.argsort(flat[pair], kind="stable")]  # pairs grouped by document
    doc = flat[pair]
    qi_all = pair // rows.shape[1]
    cut = np.flatnonzero(np.diff(doc)) + 1
    groups = list(zip(np.concatenate([[0], cut]).tolist(), np.concatenate([cut, [len(doc)]]).tolist()))
    res = np.zeros(len(pair), np.float32)  # a query or a document without tokens scores 0

    def run(span: tuple[int, int]) -> None:
        for a, b in groups[span[0] : span[1]]:
            d, qi = int(doc[a]), qi_all[a:b]
            lo, hi = int(offsets[d]), int(offsets[d + 1])
            ql = qlen[qi]
            if hi == lo or not ql.any():
                continue
            dn = np.array(tokens[lo:hi], np.float32)  # (T_d, M) a float32 copy (float16/int8 widened)
            if scales is not None:
                dn *= np.asarray(scales[lo:hi], np.float32)[:, None]
            dt = torch.from_numpy(dn)
            seg = np.cumsum(ql) - ql  # each query's first token inside the gathered block
            idx = np.repeat(qoff[qi] - seg, ql) + np.arange(int(ql.sum()))
            best = (qcat.index_select(0, torch.from_numpy(idx)) @ dt.T).amax(dim=1).numpy()  # (sum T_q,)
            has = ql > 0  # reduceat of an empty segment would read its neighbour's first token
            res[a:b][has] = np.add.reduceat(best, seg[has]) / ql[has]

    n_workers = torch.get_num_threads() if workers is None else max(1, int(workers))
    step = max(1, -(-len(groups) // (4 * n_workers)))
    spans = [(i, min(len(groups), i + step)) for i in range(0, len(groups), step)]
    if n_workers > 1 and len(spans) > 1:
        with ThreadPoolExecutor(min(n_workers, len(spans))) as pool:  # numpy parts release the GIL
            list(pool.map(run, spans))
    else:
        for span in spans:
            run(span)
    out.reshape(-1)[pair] = res
    return out


def maxsim_rerank_rows(
    q: Sequence[np.ndarray],
    rows: np.ndarray,
    tokens: np.ndarray,
    offsets: np.ndarray,
    scales: np.ndarray | None = None,
    block: int = RERANK_BLOCK,
    workers: int | None = None,
    kernel: str = "auto",
) -> np.ndarray:
    """MaxSim of query i against document rows ``rows[i]``, gathered straight from (memory-mapped) storage.

    The late-interaction re-rank of ColBERT (Khattab and Zaharia, 2020) and PLAID
    (Santhanam et al., 2022): a block of queries gathers its candidates' token vectors with
    one fancy index (:func:`segment_token_index`, no per-document padding) and scores them
    with one batched product and one segment max (:func:`maxsim_segments`); no union, no
    Python loop over candidates or over the queries of a block. "auto" scores document-major
    (:func:`maxsim_by_document`) instead when documents recur in many candidate lists. A
    parallel numba kernel over float16 storage (``kernel="numba"``: each candidate token
    widened once, running maxima, no similarity matrix; ``embforge.scoring._maxsim_kernel``)
    is not picked by "auto": against the segment kernel it measured 0.49x-1.09x at the issue's
    shape and 1.06x-1.19x at the 100k projected shape over two runs (bench/results/search.md,
    run 5a), no clear win.

    Args:
        q: Q query token matrices (Tq_i, M).
        rows: (Q, C) int document rows; -1 = no candidate (scores nan).
        tokens: (T_total, M) token vectors of every document (float16/float32, or int8 with ``scales``).
        offsets: (N+1,) document r = ``tokens[offsets[r]:offsets[r+1]]``.
        scales: (T_total,) per-token scale of int8 ``tokens`` (None for float storage).
        block: bound on the gathered (B x L x M) elements of one block.
        workers: threads scoring blocks side by side (default: torch's thread count).
        kernel: "auto" (the rule above) or a form of ``RERANK_KERNELS`` forced: "segments",
            "document", "numba" (float16 storage only, never picked by "auto").

    Returns:
        (Q, C) float32.

    Example:
        >>> tok = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
        >>> maxsim_rerank_rows([np.eye(2, dtype=np.float32)], np.array([[1, -1]]), tok, np.array([0, 1, 2]))
        array([[0.5, nan]], dtype=float32)
    """
    rows = np.asarray(rows, np.int64).reshape(len(q), -1)
    out = np.full(rows.shape, np.nan, np.float32)
    if not len(q) or not rows.shape[1]:
        return out
    offsets = np.asarray(offsets, np.int64)
    if len(tokens) == 0:  # every document is empty (and the spare gather slot 0 does not exist)
        out[rows >= 0] = 0.0
        return out
    kernel = _pick_kernel(kernel, rows, tokens, scales)
    if kernel == "document":  # documents recur: read each once
        return maxsim_by_document(q, rows, tokens, offsets, scales, workers)
    if kernel == "numba":
        return _rows_f16_numba(q, rows, tokens, offsets)
    doc_len = np.diff(offsets)
    per_query = np.where(rows >= 0, doc_len[np.maximum(rows, 0)], 0).sum(axis=1) + 1  # (Q,) tokens
    step = max(1, block // max(1, tokens.shape[1] * int(per_query.max())))
    spans = [(i, min(len(q), i + step)) for i in range(0, len(q), step)]

    def run(span: tuple[int, int]) -> None:
        i, j = span
        src, bounds, lens = segment_token_index(rows[i:j], offsets)
        d = np.take(tokens, src, axis=0)  # (B*L, M) one gather from the (memory-mapped) store
        sc = None if scales is None else np.take(scales, src)
        qp, ql = pad_queries(q[i:j])
        s = maxsim_segments(qp, ql, d, bounds, lens, sc)
        out[i:j] = np.where(rows[i:j] >= 0, s, np.nan)

    n_workers = torch.get_num_threads() if workers is None else max(1, int(workers))
    if n_workers > 1 and len(spans) > 1:
        # numpy's gather and segment max run single-threaded and release the GIL: blocks in
        # parallel threads keep every core busy between the (threaded) products
        with ThreadPoolExecutor(min(n_workers, len(spans))) as pool:
            list(pool.map(run, spans))
    else:
        for span in spans:
            run(span)
    return out


def maxsim_rerank(
    q: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    doc_lengths: np.ndarray,
    gather: Callable[[np.ndarray], np.ndarray],
    block: int = RERANK_BLOCK,
) -> list[np.ndarray]:
    """MaxSim of each query against its own candidate documents (batched candidate re-rank).

    The union of all candidates' token vectors is gathered once (``gather``), then
    scored per query block by :func:`maxsim_rerank_rows` (one batched product a block).

    Args:
        q: Q query token matrices (Tq_i, M).
        candidates: Q arrays of document rows (valid rows, any order, repeats allowed).
        doc_lengths: (N,) token count of every document row.
        gather: sorted unique rows (R,) -> their token vectors concatenated in that order
            (sum of their lengths, M), float32.
        block: bound on the gathered elements of one query block.

    Returns:
        Q arrays (len(candidates[i]),) float32.

    Example:
        >>> docs = [np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)]
        >>> gather = lambda rows: np.concatenate([docs[r] for r in rows])
        >>> maxsim_rerank([np.eye(2, dtype=np.float32)], [np.array([1, 0])], np.array([1, 1]), gather)
        [array([0.5, 0.5], dtype=float32)]
    """
    cands = [np.asarray(c, np.int64) for c in candidates]
    n_c = np.array([len(c) for c in cands], np.int64)
    if not len(q) or not n_c.sum():
        return [np.zeros(len(c), np.float32) for c in cands]
    uniq = np.unique(np.concatenate(cands))
    local_len = np.asarray(doc_lengths, np.int64)[uniq]
    local_off = np.concatenate([[0], np.cumsum(local_len)]).astype(np.int64)
    padded = np.full((len(cands), int(n_c.max())), -1, np.int64)
    for i, c in enumerate(cands):
        padded[i, : len(c)] = np.searchsorted(uniq, c)
    scores = maxsim_rerank_rows(q, padded, gather(uniq), local_off, block=block)
    return [scores[i, : n_c[i]] for i in range(len(cands))]
