"""Take a transformers masked-LM apart: backbone, MLM head, embeddings, position ids.

RetroMAE and MLM pretraining work with "any HF encoder that has a MaskedLM
head". They need the backbone (to get hidden states and to save it alone), the
MLM head (to score only the positions that are predicted) and, for RetroMAE's
decoder, the word + position embeddings. This module finds them for the
common families (BERT, RoBERTa/XLM-R, DistilBERT, ModernBERT, ELECTRA-style
``generator_lm_head``) and says clearly when it cannot.

Shape letters: B batch, T tokens, H hidden, V vocab.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn
from transformers import PreTrainedModel

from embforge.errors import ConfigError

__all__ = ["backbone_of", "mlm_head_of", "position_offset", "position_ids_for"]


def backbone_of(lm: nn.Module) -> PreTrainedModel:
    """The encoder without its MLM head (``lm.base_model`` for transformers models)."""
    base = getattr(lm, "base_model", None)
    if base is None or base is lm:
        raise ConfigError(
            f"{type(lm).__name__} has no separate base model; pass a masked-LM model "
            "(e.g. AutoModelForMaskedLM.from_pretrained(...))"
        )
    return base


def _submodule(lm: nn.Module, name: str) -> nn.Module:
    m = getattr(lm, name)
    if not isinstance(m, nn.Module):
        raise ConfigError(f"{type(lm).__name__}.{name} is a {type(m).__name__}, not a module; pass a masked-LM model")
    return m


def mlm_head_of(lm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function (..., H) hidden states -> (..., V) vocabulary scores, sharing lm's head weights."""
    if hasattr(lm, "lm_head"):  # RoBERTa, XLM-R, CamemBERT, ...
        return _submodule(lm, "lm_head")
    if hasattr(lm, "cls"):  # BERT
        return _submodule(lm, "cls")
    if hasattr(lm, "head") and hasattr(lm, "decoder"):  # ModernBERT
        head, decoder = _submodule(lm, "head"), _submodule(lm, "decoder")
        return lambda x: decoder(head(x))
    if hasattr(lm, "vocab_projector"):  # DistilBERT
        proj, norm, act, transform = (
            _submodule(lm, n) for n in ("vocab_projector", "vocab_layer_norm", "activation", "vocab_transform")
        )
        return lambda x: proj(norm(act(transform(x))))
    if hasattr(lm, "generator_lm_head"):  # ELECTRA generator
        gen_head, gen_pred = _submodule(lm, "generator_lm_head"), _submodule(lm, "generator_predictions")
        return lambda x: gen_head(gen_pred(x))
    raise ConfigError(
        f"cannot find the MLM head of {type(lm).__name__}; supported: BERT (cls), RoBERTa/XLM-R "
        "(lm_head), ModernBERT (head+decoder), DistilBERT, ELECTRA generator"
    )


def position_offset(backbone: nn.Module) -> int:
    """Index of the first position embedding row: ``padding_idx + 1`` for RoBERTa/XLM-R, else 0.

    XLM-R numbers positions from ``pad_token_id + 1`` (= 2), which is why its
    table has 514 rows for 512 tokens.
    """
    emb = getattr(backbone, "embeddings", None)
    pad = getattr(emb, "padding_idx", None)
    return 0 if pad is None else int(pad) + 1


def position_ids_for(backbone: nn.Module, T: int, device: torch.device) -> torch.Tensor:
    """(1, T) absolute position ids of a right-padded batch of length T."""
    return (torch.arange(T, device=device) + position_offset(backbone))[None]


def embeddings_accept_position_ids(embeddings: nn.Module) -> bool:
    return "position_ids" in inspect.signature(embeddings.forward).parameters
