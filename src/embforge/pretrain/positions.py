"""Extend the absolute position embeddings of a pretrained encoder to longer inputs.

BGE-M3 took XLM-R from 514 to 8194 position rows (8192 tokens) before its
RetroMAE stage. The new rows need a sensible start: ``"copy"`` (default) tiles
the learned rows, so position ``512 + k`` starts as position ``k`` (Longformer's
initialisation, which keeps the local structure of the table); ``"random"``
draws them from N(0, initializer_range). The existing rows are kept bit for
bit, so inputs that fit the old length give exactly the old outputs.

XLM-R/RoBERTa number positions from ``padding_idx + 1`` (= 2): rows 0 and 1
are never used for real tokens, so 514 rows hold 512 learned positions and the
tiling starts at row 2.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from embforge.errors import ConfigError
from embforge.pretrain.mlm_parts import position_offset
from embforge.registry import Registry

__all__ = ["POSITION_INITS", "extend_positions"]

POSITION_INITS: Registry = Registry("position initialisation")


@POSITION_INITS.register("copy")
def _copy_init(old: torch.Tensor, new: torch.Tensor, offset: int, std: float) -> None:
    learned = old[offset:]  # (n, H) rows of real positions
    n = learned.shape[0]
    for start in range(old.shape[0], new.shape[0], n):
        k = start - offset  # position index of row `start`
        rows = min(n, new.shape[0] - start)
        src = torch.arange(k, k + rows) % n
        new[start : start + rows] = learned[src]


@POSITION_INITS.register("random")
def _random_init(old: torch.Tensor, new: torch.Tensor, offset: int, std: float) -> None:
    nn.init.normal_(new[old.shape[0] :], std=std)


def _embeddings_of(model: nn.Module) -> tuple[nn.Module, nn.Module, nn.Embedding]:
    """(backbone, its embeddings block, the position table) of a transformers model or masked-LM."""
    base = getattr(model, "base_model", model)
    emb = getattr(base, "embeddings", None)
    table = getattr(emb, "position_embeddings", None)
    if emb is None or not isinstance(table, nn.Embedding):
        raise ConfigError(
            f"{type(model).__name__} has no absolute position-embedding table (embeddings.position_embeddings); "
            "position extension applies to BERT/RoBERTa/XLM-R-style encoders, rotary models need none"
        )
    return base, emb, table


@torch.no_grad()
def extend_positions(model: PreTrainedModel, max_positions: int, init: str = "copy", tokenizer=None) -> nn.Module:
    """Grow ``model``'s position table to ``max_positions`` rows in place.

    Args:
        model: a transformers encoder or masked-LM (BERT, RoBERTa, XLM-R, ...).
        max_positions: new number of rows (``config.max_position_embeddings``),
            e.g. 8194 for 8192 XLM-R tokens.
        init: how to fill the new rows, one of :data:`POSITION_INITS` ("copy", "random").
        tokenizer: if given, its ``model_max_length`` becomes the new token limit.

    Returns:
        The same model.

    Example:
        >>> from transformers import XLMRobertaConfig, XLMRobertaModel
        >>> m = XLMRobertaModel(XLMRobertaConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
        ...     num_attention_heads=2, intermediate_size=8, max_position_embeddings=6))
        >>> extend_positions(m, 12).config.max_position_embeddings
        12
    """
    fill = POSITION_INITS.get(init)
    base, emb, old_table = _embeddings_of(model)
    P_old, H = old_table.weight.shape
    offset = position_offset(base)
    if int(max_positions) <= P_old:
        raise ConfigError(
            f"max_positions={max_positions} must exceed the current {P_old} position rows; "
            f"pick a larger value (e.g. {(P_old - offset) * 16 + offset} for 16x longer inputs)"
        )
    new_table = nn.Embedding(int(max_positions), H, padding_idx=old_table.padding_idx)
    new_table.to(device=old_table.weight.device, dtype=old_table.weight.dtype)
    new_table.weight[:P_old] = old_table.weight
    std = float(getattr(model.config, "initializer_range", 0.02))
    fill(old_table.weight, new_table.weight, offset, std)
    emb.position_embeddings = new_table
    for name in ("position_ids", "token_type_ids"):
        buf = getattr(emb, name, None)
        if isinstance(buf, torch.Tensor):
            grown = (
                torch.arange(int(max_positions), device=buf.device).expand(1, -1)
                if name == "position_ids"
                else torch.zeros(1, int(max_positions), dtype=buf.dtype, device=buf.device)
            )
            emb.register_buffer(name, grown, persistent=False)
    for cfg in {id(c): c for c in (model.config, getattr(base, "config", model.config))}.values():
        cfg.max_position_embeddings = int(max_positions)
    if tokenizer is not None:
        tokenizer.model_max_length = int(max_positions) - offset
    return model
