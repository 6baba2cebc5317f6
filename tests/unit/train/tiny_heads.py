"""A tiny three-head encoder for tests of the training engine (tensor level).

Mirrors the BGE-M3 heads of SPEC section 1 on a 2-layer random BERT so GradCache
and the distributed gather can be tested without the full Encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embforge.types import Batch, EmbeddingOutput


class TinyThreeHead(nn.Module):
    def __init__(self, vocab: int = 50, hidden: int = 16, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        torch.manual_seed(seed)
        cfg = BertConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        self.backbone = BertModel(cfg, add_pooling_layer=False)
        self.sparse_linear = nn.Linear(hidden, 1)
        self.colbert_linear = nn.Linear(hidden, hidden)

    def forward(self, batch: Batch) -> EmbeddingOutput:
        h = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        m = batch.attention_mask
        sparse = torch.relu(self.sparse_linear(h)).squeeze(-1) * m
        mv = F.normalize(self.colbert_linear(h[:, 1:]), dim=-1) * m[:, 1:, None]
        return EmbeddingOutput(
            dense=F.normalize(h[:, 0], dim=-1),
            sparse=sparse,
            multivector=mv,
            multivector_mask=m[:, 1:],
            input_ids=batch.input_ids,
            attention_mask=m,
        )


def random_batch(n: int, max_len: int, seed: int, vocab: int = 50) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (n,), generator=g)
    ids = torch.randint(5, vocab, (n, max_len), generator=g)
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    ids[:, 0] = 1  # [CLS]-like
    t = int(lengths.max())
    return Batch(ids[:, :t], mask[:, :t])
