"""SimCSE: contrastive sentence embeddings from dropout noise or NLI triples.

Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence Embeddings".

* Unsupervised: the same sentence is encoded twice (two dropout masks, p = 0.1)
  and the two views form the positive pair; the other sentences' second views
  are the negatives: ``L_i = -log exp(cos(h_i, h_i+)/tau) / sum_j exp(cos(h_i, h_j+)/tau)``.
* Supervised: (premise, entailment) is the positive pair, the contradiction
  hypothesis a hard negative; the denominator runs over every positive and
  every hard negative of the batch.

Cosine similarity, tau = 0.05. Both are InfoNCE with in-batch negatives on the
dense head (siblings: ``infonce``); the data side (encode a text twice in
train mode) lives in the contrastive recipe (``loss.name: simcse_unsup``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embforge.losses.matryoshka import dense_of
from embforge.types import EmbeddingOutput, LossOutput

__all__ = ["simcse_unsup_loss", "simcse_sup_loss", "SimCSELoss"]


def simcse_unsup_loss(h1: torch.Tensor, h2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE on two views (B, D) of the same B sentences."""
    sim = F.normalize(h1.float(), dim=-1) @ F.normalize(h2.float(), dim=-1).T
    return F.cross_entropy(sim / temperature, torch.arange(h1.shape[0], device=h1.device))


def simcse_sup_loss(
    h: torch.Tensor, h_pos: torch.Tensor, h_neg: torch.Tensor, temperature: float = 0.05
) -> torch.Tensor:
    """Supervised SimCSE on (anchor, entailment, contradiction) vectors, each (B, D)."""
    cands = F.normalize(torch.cat([h_pos, h_neg]).float(), dim=-1)
    sim = F.normalize(h.float(), dim=-1) @ cands.T  # (B, 2B)
    return F.cross_entropy(sim / temperature, torch.arange(h.shape[0], device=h.device))


class SimCSELoss:
    """SimCSE on ``EmbeddingOutput`` s in the grouped layout (dense head).

    ``supervised=False``: ``q`` = first views, ``d`` = second views (G = 1).
    ``supervised=True``: ``d`` = (entailment, contradiction) per anchor (G = 2).
    """

    heads = ("dense",)

    def __init__(self, supervised: bool, temperature: float = 0.05) -> None:
        self.supervised = supervised
        self.temperature = temperature

    def __call__(
        self,
        q: EmbeddingOutput,
        d: EmbeddingOutput,
        *,
        group_size: int,
        teacher_scores: torch.Tensor | None = None,
    ) -> LossOutput:
        need = 2 if self.supervised else 1
        if group_size != need:
            kind = (
                "(anchor, entailment, contradiction) triples: 1 negative per query"
                if self.supervised
                else "single sentences encoded twice: 0 negatives per query"
            )
            raise ValueError(
                f"SimCSE {'sup' if self.supervised else 'unsup'} expects {kind}; "
                f"got {group_size - 1} negatives per query"
            )
        qd, dd = dense_of(q), dense_of(d)
        if self.supervised:
            loss = simcse_sup_loss(qd, dd[0::2], dd[1::2], self.temperature)
            return LossOutput(loss, {"simcse_sup/dense": loss})
        loss = simcse_unsup_loss(qd, dd, self.temperature)
        return LossOutput(loss, {"simcse_unsup/dense": loss})
