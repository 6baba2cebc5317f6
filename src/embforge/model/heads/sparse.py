"""Sparse (lexical) head: ``w_t = ReLU(W_lex^T H[t])`` (B, T), one weight per token.

BGE-M3 (Chen et al., 2024, "BGE M3-Embedding"): special and padding tokens weigh 0;
a term repeated in a text keeps its max weight; the score is
``s_lex = sum_{t in q and p} w_qt * w_pt`` (``embforge.scoring.lexical_scores``,
``sparse_vector_scores`` on encoded CSR vectors). BGE-M3 layout: ``sparse_linear.pt``
(a Linear H->1 state dict). Missing from a checkpoint: ``W_lex = 0, b = 1`` (every
non-special token weighs 1, so the lexical score counts shared terms).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from embforge.model.heads.base import Head, HeadOptions, _need
from embforge.scoring import lexical_scores, sparse_vector_scores
from embforge.types import Batch, EmbeddingOutput, Embeddings, SparseVectors

__all__ = ["SparseHead"]


class SparseHead(Head):
    """Lexical weights: (B, T, H) -> (B, T); ``special_ids`` and padding get weight 0."""

    bge_m3_file = "sparse_linear.pt"
    special_ids: torch.Tensor  # (S,) sorted special token ids (a buffer)

    def __init__(self, hidden_size: int, special_ids: list[int]) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        self.register_buffer(
            "special_ids", torch.tensor(sorted(set(special_ids)), dtype=torch.long), persistent=False
        )

    @classmethod
    def build(cls, hidden_size: int, tokenizer: Any, config: Any) -> SparseHead:
        special = [i for i in getattr(tokenizer, "all_special_ids", []) if i is not None]
        return cls(hidden_size, special)

    def weights(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-token weights (B, T), 0 at special and padding tokens."""
        w = torch.relu(self.linear(hidden)).squeeze(-1)  # (B, T)
        keep = attention_mask.bool() & ~torch.isin(input_ids, self.special_ids)
        return w * keep.to(w.dtype)

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        return {"sparse": self.weights(hidden, batch.input_ids, batch.attention_mask)}

    def file_module(self) -> nn.Module:
        return self.linear

    def init_missing(self) -> str:
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.fill_(1.0)
        return "W_lex=0, b=1 (every non-special token weighs 1)"

    # ------------------------------------------------------------ numpy
    def to_numpy(self, out: dict[str, torch.Tensor], batch: Batch, lengths: np.ndarray) -> list[Any]:
        """(B, T) weights + ids -> per text (unique term ids, max weight), weights > 0 only."""
        w = out["sparse"].float().cpu().numpy()
        ids = batch.input_ids.cpu().numpy()
        return [_unique_terms(w[j], ids[j]) for j in range(len(w))]

    @classmethod
    def stack(cls, rows: list[Any], vocab_size: int) -> SparseVectors:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
        indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
        values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
        return SparseVectors(indptr, indices.astype(np.int32), values.astype(np.float32), vocab_size)

    @classmethod
    def row(cls, value: SparseVectors, i: int) -> dict[int, float]:
        return value.row(i)

    @classmethod
    def from_rows(cls, rows: list[Any], vocab_size: int) -> SparseVectors:
        return SparseVectors.from_dicts([r or {} for r in rows], vocab_size)

    # ------------------------------------------------------------ scores
    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        qw, dw = _need(q, d, "sparse")
        qi, di = _need_ids(q, d)
        return lexical_scores(qw, qi.contiguous(), dw, di.contiguous())

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        qs, ds = _need(q, d, "sparse")
        return sparse_vector_scores(qs, ds)


def _need_ids(q: EmbeddingOutput, d: EmbeddingOutput) -> tuple[torch.Tensor, torch.Tensor]:
    if q.input_ids is None or d.input_ids is None:
        raise ValueError(
            "the loss needs the sparse (input_ids) head, but the model did not compute it; "
            "add 'sparse (input_ids)' to model.heads"
        )
    return q.input_ids, d.input_ids


def _unique_terms(w: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One text's (T,) weights and ids -> (sorted unique term ids int32, their max weight float32)."""
    keep = w > 0
    t, v = ids[keep], w[keep]
    if len(t) == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    return t[starts].astype(np.int32), np.maximum.reduceat(v, starts).astype(np.float32)
