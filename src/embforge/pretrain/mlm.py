"""Masked-language-model pretraining wrapper (Arctic-Embed stage 1).

Wraps any transformers masked-LM so that only the masked positions go through
the vocabulary projection (the (B, T, V) logits of a 250k vocabulary are the
biggest tensor of MLM training otherwise).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from embforge.losses.mlm import mlm_loss
from embforge.pretrain.collate import MLMBatch
from embforge.pretrain.export import save_pretrained_encoder
from embforge.pretrain.mlm_parts import backbone_of, mlm_head_of
from embforge.types import LossOutput

__all__ = ["MaskedLM"]


class MaskedLM(nn.Module):
    """``forward(MLMBatch) -> LossOutput`` for a transformers masked-LM.

    Args:
        lm: e.g. ``AutoModelForMaskedLM.from_pretrained(...)`` or a model from
            :func:`embforge.model.builders.build_masked_lm`.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        backbone_of(lm)
        mlm_head_of(lm)

    @property
    def backbone(self) -> nn.Module:
        return backbone_of(self.lm)

    def forward(self, batch: MLMBatch) -> LossOutput:
        hidden = self.backbone(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state
        sel = batch.labels != -100  # (B, T)
        logits = mlm_head_of(self.lm)(hidden[sel])  # (N, V)
        return mlm_loss(logits, batch.labels[sel])

    def save_encoder(self, path: str | Path, tokenizer, format: str = "embforge") -> Path:
        """Save the encoder alone (no MLM head, no decoder) as an embforge encoder ([CLS] dense head)."""
        return save_pretrained_encoder(self.backbone, tokenizer, path, format=format)

    @torch.no_grad()
    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) argmax tokens at every position."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mlm_head_of(self.lm)(hidden).argmax(-1)
