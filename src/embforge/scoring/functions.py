"""Pure similarity functions, one per head (SPEC section 1). Torch in, torch out, differentiable.

Shapes: Q queries, N documents, D dense dim, T tokens, M multi-vector dim.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import torch

from embforge.types import SparseVectors

__all__ = [
    "dense_scores",
    "term_weights",
    "lexical_scores",
    "sparse_vector_scores",
    "maxsim_scores",
    "pad_multivectors",
    "multivector_list_scores",
    "hybrid_scores",
    "HYBRID_WEIGHTS",
    "DEFAULT_WEIGHTS",
]

#: BGE-M3's hybrid weights w1*s_dense + w2*s_lex + w3*s_mul (Chen et al., 2024): the one definition.
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({"dense": 1.0, "sparse": 0.3, "multivector": 1.0})
HYBRID_WEIGHTS: tuple[float, float, float] = (
    DEFAULT_WEIGHTS["dense"],
    DEFAULT_WEIGHTS["sparse"],
    DEFAULT_WEIGHTS["multivector"],
)


def dense_scores(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Inner products ``s_dense = <e_q, e_p>``: q (Q, D), d (N, D) -> (Q, N).

    Example:
        >>> dense_scores(torch.eye(2), torch.tensor([[1.0, 0.0]]))
        tensor([[1.],
                [0.]])
    """
    return q @ d.transpose(0, 1)


def term_weights(weights: torch.Tensor, ids: torch.Tensor, vocab: torch.Tensor) -> torch.Tensor:
    """Per-token weights (B, T) + ids (B, T) -> term vectors (B, len(vocab)) with the MAX weight per term.

    ``vocab`` is a sorted 1-D tensor of the term ids to keep as columns (ids outside it are dropped).
    """
    col = torch.searchsorted(vocab, ids).clamp(max=len(vocab) - 1)  # (B, T)
    hit = vocab[col] == ids
    w = torch.where(hit, weights, torch.zeros_like(weights))
    out = torch.zeros(ids.shape[0], len(vocab), dtype=weights.dtype, device=weights.device)
    return out.scatter_reduce(1, col, w, reduce="amax", include_self=True)


def lexical_scores(
    q_weights: torch.Tensor, q_ids: torch.Tensor, d_weights: torch.Tensor, d_ids: torch.Tensor
) -> torch.Tensor:
    """Lexical matching ``s_lex = sum_{t in q and p} w_qt * w_pt`` with max weight per term.

    Args:
        q_weights: (Q, Tq) per-token weights (0 for special/padding tokens), q_ids: (Q, Tq).
        d_weights: (N, Td), d_ids: (N, Td).

    Returns:
        (Q, N) scores. Works on a compact vocabulary (the ids present), never (B, V).

    Example:
        >>> w = torch.tensor([[0.5, 0.2, 0.4]]); ids = torch.tensor([[7, 8, 7]])
        >>> lexical_scores(w, ids, torch.tensor([[2.0]]), torch.tensor([[7]]))
        tensor([[1.]])
    """
    vocab = torch.unique(torch.cat([q_ids.flatten(), d_ids.flatten()]))  # sorted
    return term_weights(q_weights, q_ids, vocab) @ term_weights(d_weights, d_ids, vocab).transpose(0, 1)


def sparse_vector_scores(q: SparseVectors, d: SparseVectors) -> np.ndarray:
    """Lexical matching between encoded ``SparseVectors`` (numpy): (Q, N) float32."""
    return np.asarray((q.to_scipy() @ d.to_scipy().T).todense(), dtype=np.float32)


def maxsim_scores(
    q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor, chunk: int = 256
) -> torch.Tensor:
    """ColBERT late interaction ``s_mul = (1/Nq) sum_i max_j <E_q[i], E_p[j]>``.

    Args:
        q: (Q, Tq, M), q_mask: (Q, Tq) 1 = real query token (Nq = its sum per query).
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


def pad_multivectors(vecs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """N arrays (T_i, M) -> padded (N, T, M) tensor and (N, T) mask."""
    t = max((len(v) for v in vecs), default=0)
    m = vecs[0].shape[1] if vecs else 0
    x = torch.zeros(len(vecs), max(t, 1), m)
    mask = torch.zeros(len(vecs), max(t, 1))
    for i, v in enumerate(vecs):
        x[i, : len(v)] = torch.from_numpy(np.asarray(v, dtype=np.float32))
        mask[i, : len(v)] = 1
    return x, mask


def multivector_list_scores(q: list[np.ndarray], d: list[np.ndarray]) -> np.ndarray:
    """MaxSim between encoded multi-vector lists (``Embeddings.multivector``): (Q, N) float32."""
    qx, qm = pad_multivectors(q)
    dx, dm = pad_multivectors(d)
    return maxsim_scores(qx, qm, dx, dm).numpy().astype(np.float32)


def hybrid_scores(
    dense: torch.Tensor | np.ndarray | None = None,
    lexical: torch.Tensor | np.ndarray | None = None,
    multivector: torch.Tensor | np.ndarray | None = None,
    weights: tuple[float, float, float] = HYBRID_WEIGHTS,
    normalize: bool = False,
):
    """Weighted sum ``w1*s_dense + w2*s_lex + w3*s_mul`` of the given score matrices (paper: 1, 0.3, 1).

    Missing heads (None) are skipped. ``normalize=True`` divides by the sum of the used
    weights (FlagEmbedding's ``compute_score`` convention).

    Example:
        >>> hybrid_scores(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]))
        tensor([4.6000])
    """
    parts = [(s, w) for s, w in zip((dense, lexical, multivector), weights) if s is not None]
    if not parts:
        raise ValueError("hybrid_scores needs at least one of dense, lexical, multivector")
    total = sum(s * w for s, w in parts)
    if normalize:
        total = total / sum(w for _, w in parts)
    return total
