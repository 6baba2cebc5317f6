"""Collators: raw texts -> masked training batches for MLM and RetroMAE.

Each collator owns a seeded ``torch.Generator`` so that a run's masks are
reproducible. Shape letters: B batch, T tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from embforge.errors import ConfigError
from embforge.pretrain.masking import (
    check_rate,
    enhanced_decoding_mask,
    mask_tokens,
    maskable_positions,
)
from embforge.pretrain.retromae import RetroMAEBatch

__all__ = ["MLMBatch", "MLMCollator", "RetroMAECollator"]


@dataclass(frozen=True)
class MLMBatch:
    """input_ids (B, T) masked text, attention_mask (B, T), labels (B, T) (-100 = not predicted)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> MLMBatch:
        return MLMBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class _TokenizingCollator:
    def __init__(self, tokenizer, max_length: int, seed: int) -> None:
        if tokenizer.mask_token_id is None:
            raise ConfigError(
                f"tokenizer {type(tokenizer).__name__} has no mask token; MLM/RetroMAE need one "
                "(train one with `embforge pretrain tokenizer`, which adds <mask>)"
            )
        if max_length < 3:
            raise ConfigError(f"max_length={max_length} is too small; use at least 3 tokens")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        vocab = len(tokenizer)
        allowed = torch.ones(vocab, dtype=torch.bool)
        allowed[[i for i in self.special_ids if i < vocab]] = False
        self.random_token_ids = torch.nonzero(allowed).flatten()

    def _tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            list(texts),
            max_length=self.max_length,
            truncation=True,
            padding=True,
            return_tensors="pt",
        )
        return enc["input_ids"], enc["attention_mask"]


class MLMCollator(_TokenizingCollator):
    """Texts -> :class:`MLMBatch` with ``mask_rate`` of each text's tokens masked (BERT 80/10/10).

    Args:
        tokenizer: a transformers tokenizer with a mask token.
        max_length: tokens per text after truncation (special tokens included).
        mask_rate: share of the non-special tokens to predict (0.15 for BERT, 0.3 for RetroMAE's encoder).
        seed: seed of the masking generator.
    """

    def __init__(self, tokenizer, max_length: int = 512, mask_rate: float = 0.15, seed: int = 0) -> None:
        super().__init__(tokenizer, max_length, seed)
        self.mask_rate = check_rate("mask_rate", mask_rate, 0.0, 1.0)

    def __call__(self, texts: list[str], generator: torch.Generator | None = None) -> MLMBatch:
        ids, attn = self._tokenize(texts)
        maskable = maskable_positions(ids, attn, self.special_ids)
        masked, labels = mask_tokens(
            ids,
            maskable,
            self.mask_rate,
            self.tokenizer.mask_token_id,
            self.random_token_ids,
            generator or self.generator,
        )
        return MLMBatch(masked, attn, labels)


class RetroMAECollator(_TokenizingCollator):
    """Texts -> :class:`RetroMAEBatch`.

    The encoder input is masked BERT-style at ``encoder_mask_rate`` (15-30%).
    The decoder input is the unmasked text; its aggressive masking
    (``decoder_mask_rate``, 50-70%) is the position-specific attention mask
    (each position sees its own sample of the other tokens, as in the RetroMAE
    reference implementation). Every non-special token is a decoder target.

    Args:
        tokenizer: a transformers tokenizer with a mask token.
        max_length: tokens per text after truncation.
        encoder_mask_rate: encoder-side masking, in [0.15, 0.30] as in the paper (checked in [0, 1)).
        decoder_mask_rate: decoder-side masking, 0.5-0.7 in the paper.
        seed: seed of the masking generator.
    """

    def __init__(
        self,
        tokenizer,
        max_length: int = 512,
        encoder_mask_rate: float = 0.3,
        decoder_mask_rate: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(tokenizer, max_length, seed)
        self.encoder_mask_rate = check_rate("encoder_mask_rate", encoder_mask_rate)
        self.decoder_mask_rate = check_rate("decoder_mask_rate", decoder_mask_rate)

    def __call__(self, texts: list[str], generator: torch.Generator | None = None) -> RetroMAEBatch:
        ids, attn = self._tokenize(texts)
        gen = generator or self.generator
        maskable = maskable_positions(ids, attn, self.special_ids)
        enc_ids, enc_labels = mask_tokens(
            ids,
            maskable,
            self.encoder_mask_rate,
            self.tokenizer.mask_token_id,
            self.random_token_ids,
            gen,
        )
        visible = enhanced_decoding_mask(attn, self.decoder_mask_rate, gen)
        dec_labels = torch.where(maskable, ids, torch.full_like(ids, -100))
        return RetroMAEBatch(enc_ids, attn, enc_labels, ids, visible, dec_labels)
