"""Multi-vector head: ColBERT vectors ``norm(W_mul^T H[1:])`` (B, T-1, M) of the non-[CLS] tokens.

ColBERT (Khattab and Zaharia, 2020, "ColBERT: Efficient and Effective Passage Search
via Contextualized Late Interaction over BERT") as used by BGE-M3 (Chen et al., 2024):
``s_mul = (1/Nq) sum_i max_j <E_q[i], E_p[j]>`` (``embforge.scoring.maxsim_scores``,
``multivector_list_scores`` on encoded lists). BGE-M3 layout: ``colbert_linear.pt``
(a Linear H->M state dict). Missing from a checkpoint: ``W_mul = I, b = 0`` (ColBERT on
the backbone's own token states), or for M != H a N(0, 0.02) matrix from seed 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embforge.model.heads.base import Head, HeadOptions, _need, init_linear_
from embforge.scoring import maxsim_scores, multivector_list_scores
from embforge.types import Batch, EmbeddingOutput, Embeddings

__all__ = ["MultiVectorHead"]


class MultiVectorHead(Head):
    """ColBERT vectors: (B, T, H) -> (B, T-1, M) and mask (B, T-1)."""

    bge_m3_file = "colbert_linear.pt"

    def __init__(self, hidden_size: int, dim: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, dim or hidden_size)

    @classmethod
    def build(cls, hidden_size: int, tokenizer: Any, config: Any) -> MultiVectorHead:
        return cls(hidden_size, config.multivector_dim)

    def vectors(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised vectors (B, T-1, M) and their mask (B, T-1)."""
        mask = attention_mask[:, 1:]  # (B, T-1)
        v = self.linear(hidden[:, 1:]) * mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize(v, dim=-1), mask

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        v, mask = self.vectors(hidden, batch.attention_mask)
        return {"multivector": v, "multivector_mask": mask}

    def file_module(self) -> nn.Module:
        return self.linear

    def init_missing(self) -> str:
        lin = self.linear
        if lin.in_features != lin.out_features:
            init_linear_(lin, seed=0)
            return "W_mul ~ N(0, 0.02) from seed 0, b=0"
        with torch.no_grad():
            lin.weight.copy_(torch.eye(lin.in_features))
            lin.bias.zero_()
        return "W_mul=identity, b=0"

    # ------------------------------------------------------------ numpy
    def to_numpy(self, out: dict[str, torch.Tensor], batch: Batch, lengths: np.ndarray) -> list[Any]:
        """Per text its (T_i - 1, M) vectors (padding dropped); ``lengths``: T_i per text."""
        vecs = out["multivector"].float().cpu().numpy()
        return [vecs[j, : int(lengths[j]) - 1].copy() for j in range(len(vecs))]

    @classmethod
    def stack(cls, rows: list[Any], vocab_size: int) -> list[np.ndarray]:
        return list(rows)

    @classmethod
    def from_rows(cls, rows: list[Any], vocab_size: int) -> list[np.ndarray]:
        return list(rows)

    # ------------------------------------------------------------ scores
    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        qv, dv = _need(q, d, "multivector")
        qm, dm = _need(q, d, "multivector_mask")
        return maxsim_scores(qv, qm, dv, dm)

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        qv, dv = _need(q, d, "multivector")
        return multivector_list_scores(qv, dv)
