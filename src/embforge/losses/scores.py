"""Per-head score matrices between query and document ``EmbeddingOutput`` s.

Thin adapters from ``EmbeddingOutput`` fields to the pure scoring functions
(SPEC section 1): dense inner product, lexical match (max weight per term,
summed over shared terms) and MaxSim divided by the number of query tokens.
"""

from __future__ import annotations

import torch

from embforge.types import EmbeddingOutput

__all__ = ["head_scores", "dense_scores", "lexical_scores", "maxsim_scores", "HEAD_PART"]

# short names used in loss part keys: "infonce/dense", "infonce/sparse", ...
HEAD_PART = {"dense": "dense", "sparse": "sparse", "multivector": "multivector"}


def dense_scores(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """(Q, D) x (N, D) -> (Q, N) inner products (cosine for normalised vectors)."""
    return q @ d.transpose(0, 1)


def _term_vectors(weights: list[torch.Tensor], ids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-text max weight per term over a vocabulary compacted to the ids present."""
    flat = torch.cat([i.reshape(-1) for i in ids])
    _, inverse = torch.unique(flat, return_inverse=True)
    u = int(inverse.max()) + 1 if inverse.numel() else 1
    out, start = [], 0
    for w, i in zip(weights, ids):
        n = i.numel()
        inv = inverse[start : start + n].view_as(i)
        start += n
        vec = w.new_zeros(w.shape[0], u).scatter_reduce(1, inv, w, reduce="amax", include_self=True)
        out.append(vec)
    return out


def lexical_scores(
    q_w: torch.Tensor, q_ids: torch.Tensor, d_w: torch.Tensor, d_ids: torch.Tensor
) -> torch.Tensor:
    """Lexical matching score ``s_lex = sum_{t in q and d} w_qt * w_dt`` -> (Q, N).

    Args:
        q_w: (Q, T) per-token weights (>= 0; padding and special tokens 0).
        q_ids: (Q, T) token ids.
        d_w: (N, T') and d_ids (N, T') the same for documents.

    A term occurring several times in a text keeps its max weight (BGE-M3).
    """
    qv, dv = _term_vectors([q_w, d_w], [q_ids, d_ids])
    return qv @ dv.transpose(0, 1)


def maxsim_scores(
    q: torch.Tensor,
    q_mask: torch.Tensor,
    d: torch.Tensor,
    d_mask: torch.Tensor,
    chunk_elements: int = 1 << 25,
) -> torch.Tensor:
    """ColBERT late interaction ``s_mul = (1/N) sum_i max_j <q_i, d_j>`` -> (Q, N docs).

    Args:
        q: (Q, T, M) query token vectors; q_mask (Q, T) 1 = real token.
        d: (N, T', M) document token vectors; d_mask (N, T').
        chunk_elements: bound on the (Q_chunk, N, T, T') similarity block kept in memory.
    """
    qm = q_mask.to(q.dtype)
    neg = torch.finfo(q.dtype).min
    dpad = ~d_mask.bool()
    step = max(1, chunk_elements // max(1, d.shape[0] * q.shape[1] * d.shape[1]))
    rows = []
    for a in range(0, q.shape[0], step):
        sim = torch.einsum("qim,njm->qnij", q[a : a + step], d)  # (Qc, N, T, T')
        sim = sim.masked_fill(dpad[None, :, None, :], neg)
        best = sim.max(dim=-1).values * qm[a : a + step, None, :]  # (Qc, N, T)
        rows.append(best.sum(-1) / qm[a : a + step].sum(-1, keepdim=True).clamp_min(1.0))
    return torch.cat(rows, dim=0)


def head_scores(q: EmbeddingOutput, d: EmbeddingOutput, head: str) -> torch.Tensor:
    """Score every query against every document with one head -> (Q, N)."""
    if head == "dense":
        _need(q.dense, d.dense, head)
        return dense_scores(q.dense, d.dense)
    if head == "sparse":
        _need(q.sparse, d.sparse, head)
        _need(q.input_ids, d.input_ids, "sparse (input_ids)")
        return lexical_scores(q.sparse, q.input_ids, d.sparse, d.input_ids)
    if head == "multivector":
        _need(q.multivector, d.multivector, head)
        return maxsim_scores(q.multivector, q.multivector_mask, d.multivector, d.multivector_mask)
    raise ValueError(f"unknown head {head!r}; choose from: dense, multivector, sparse")


def _need(a: object, b: object, head: str) -> None:
    if a is None or b is None:
        raise ValueError(
            f"the loss needs the {head} head, but the model did not compute it; add {head!r} to model.heads"
        )
