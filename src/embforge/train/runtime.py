"""What every recipe's run does before the first step: seeds, device, tokenising, step count.

Shared by the recipes in ``embforge.train.recipes`` (contrastive, nv-embed, retromae, mlm).
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import numpy as np
import torch

from embforge.errors import ConfigError
from embforge.text import collate, tokenize_texts
from embforge.train.settings import LoopConfig
from embforge.types import Batch

__all__ = ["seed_everything", "pick_device", "enable_checkpointing", "Tokenize", "total_steps"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(device: str | None) -> torch.device:
    """``device`` or the local GPU (``cuda:LOCAL_RANK`` under torchrun) when there is one, else cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def enable_checkpointing(backbone: Any) -> None:
    """Activation (gradient) checkpointing on an HF backbone, transformers 4.x and 5.x spellings."""
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(backbone, "gradient_checkpointing_enable"):
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ConfigError("model.gradient_checkpointing: this backbone does not support it; set it false")


def total_steps(loop: LoopConfig, batches_per_epoch: int) -> int:
    """``loop.max_steps`` or ``ceil(epochs * batches_per_epoch)``."""
    if loop.max_steps is not None:
        return int(loop.max_steps)
    return max(1, math.ceil(loop.epochs * batches_per_epoch))


class Tokenize:
    """Texts -> ``Batch`` with the encoder's role prefixes; truncation is counted, not warned."""

    def __init__(self, encoder: Any) -> None:
        self.enc = encoder
        self.truncated = 0

    def __call__(self, texts: list[str], role: str, max_length: int) -> Batch:
        pre = self.enc.prefix(role)
        tok = tokenize_texts(self.enc.tokenizer, [pre + t for t in texts], max_length)
        self.truncated += len(tok.truncated)
        return collate(tok.ids, self.enc.pad_id, getattr(self.enc.tokenizer, "padding_side", "right"))

    def lengths(self, texts: list[str], max_length: int) -> list[int]:
        """Token counts (with special tokens, truncated at ``max_length``), for length grouping."""
        ids = self.enc.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=max_length, verbose=False
        )["input_ids"]
        return [len(x) for x in ids]
