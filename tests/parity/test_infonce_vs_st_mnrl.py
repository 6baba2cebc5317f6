"""Plain InfoNCE equals sentence-transformers' MultipleNegativesRankingLoss (scale = 1/tau)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from embforge.losses import InfoNCELoss
from embforge.types import EmbeddingOutput
from helpers.requires import require_module

pytestmark = pytest.mark.parity


@pytest.mark.parametrize("num_negs", [0, 1, 3])
def test_infonce_equals_st_mnrl(num_negs):
    mnrl_mod = require_module(
        "sentence_transformers.sentence_transformer.losses.multiple_negatives_ranking",
        "pip install -e '.[dev]' (sentence-transformers)",
    )
    torch.manual_seed(num_negs)
    q_, g = 6, 1 + num_negs
    a = torch.randn(q_, 16)
    docs = [torch.randn(q_, 16) for _ in range(g)]  # docs[0] positives, then negatives
    tau = 0.05
    mnrl = mnrl_mod.MultipleNegativesRankingLoss(model=None, scale=1 / tau)
    ref = mnrl.compute_loss_from_embeddings([a, *docs], labels=None)
    grouped = torch.stack(docs, dim=1).reshape(q_ * g, 16)  # (Q*G, D): positive first per query
    ours = InfoNCELoss(temperature=tau)(
        EmbeddingOutput(dense=F.normalize(a, dim=-1)),
        EmbeddingOutput(dense=F.normalize(grouped, dim=-1)),
        group_size=g,
    )
    assert float(ours.total) == pytest.approx(float(ref), rel=1e-5)
