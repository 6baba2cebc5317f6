"""Dense head: ``e = norm(pool(H))`` (B, D=H), one vector per text.

BGE-M3 (Chen et al., 2024, "BGE M3-Embedding") pools the [CLS] state; other
poolings come from ``embforge.model.pooling``. Matryoshka truncation (Kusupati et al.,
2022, "Matryoshka Representation Learning") keeps the first ``dim`` coordinates and
renormalises (``embforge.scoring.truncate_dense``). For inputs longer than the
backbone, MCLS (BGE-M3, section 3.3) averages the hidden states of [CLS] tokens
inserted every ``mcls_stride`` tokens. Scores: inner product ``<e_q, e_p>``.
Weights: the pooling's own (none for cls/mean); BGE-M3 ships no dense file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embforge.model.heads.base import Head, HeadOptions, _need, numpy_dense_scores
from embforge.model.pooling import build_pooling
from embforge.scoring import dense_scores, truncate_dense
from embforge.types import Batch, EmbeddingOutput, Embeddings

__all__ = ["DenseHead"]


class DenseHead(Head):
    """Pooling + optional L2 normalisation: (B, T, H) -> (B, D=H)."""

    def __init__(self, pooling: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        self.pooling = pooling
        self.normalize = normalize

    @classmethod
    def build(cls, hidden_size: int, tokenizer: Any, config: Any) -> DenseHead:
        return cls(build_pooling(config.pooling, hidden_size, **config.pooling_options), config.normalize)

    def embed(self, hidden: torch.Tensor, pool_mask: torch.Tensor) -> torch.Tensor:
        """Pooled (and normalised) vectors (B, D), before any truncation."""
        e = self.pooling(hidden, pool_mask)  # (B, D)
        return F.normalize(e, dim=-1) if self.normalize else e

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        if opts.cls_positions is not None:
            return {"dense": self.mcls(hidden, opts.cls_positions, opts.dim)}
        pm = batch.attention_mask if batch.pool_mask is None else batch.pool_mask
        return {"dense": truncate_dense(self.embed(hidden, pm), opts.dim, self.normalize)}

    def mcls(self, hidden: torch.Tensor, positions, dim: int | None) -> torch.Tensor:
        """MCLS: mean of the hidden states at each text's [CLS] positions, normalised -> (B, D)."""
        rows = [hidden[j, pos].mean(0) for j, pos in enumerate(positions)]
        e = torch.stack(rows).float()  # (B, H)
        if self.normalize:
            e = F.normalize(e, dim=-1)
        return truncate_dense(e, dim, self.normalize)

    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        qa, da = _need(q, d, "dense")
        return dense_scores(qa, da)

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        qa, da = _need(q, d, "dense")
        return numpy_dense_scores(qa, da)
