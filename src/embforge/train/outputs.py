"""Small operations on ``EmbeddingOutput`` (concatenate, slice, detach) used by
GradCache and the distributed gather. Token-axis tensors are right-padded to a
common length when concatenated (padding carries zero weight / zero mask)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace

import torch
import torch.nn.functional as F

from embforge.types import EmbeddingOutput

__all__ = ["tensor_fields", "map_output", "cat_outputs", "slice_output", "num_rows", "pad_tokens"]

# fields whose dim 1 is a token axis (padded on concatenation)
_TOKEN_AXIS = {"sparse", "multivector", "multivector_mask", "input_ids", "attention_mask"}


def tensor_fields(out: EmbeddingOutput) -> dict[str, torch.Tensor]:
    """The non-None tensor fields of ``out``."""
    return {f.name: getattr(out, f.name) for f in fields(out) if getattr(out, f.name) is not None}


def map_output(out: EmbeddingOutput, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> EmbeddingOutput:
    """Apply ``fn(name, tensor)`` to every tensor field."""
    return replace(out, **{k: fn(k, v) for k, v in tensor_fields(out).items()})


def num_rows(out: EmbeddingOutput) -> int:
    for v in tensor_fields(out).values():
        return int(v.shape[0])
    return 0


def pad_tokens(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad dim 1 of ``x`` with zeros to ``length``."""
    extra = length - x.shape[1]
    if extra <= 0:
        return x
    pad = [0, 0] * (x.dim() - 2) + [0, extra]
    return F.pad(x, pad)


def cat_outputs(outs: Sequence[EmbeddingOutput]) -> EmbeddingOutput:
    """Concatenate along the batch axis, padding token axes to the longest."""
    names = tensor_fields(outs[0]).keys()
    merged = {}
    for k in names:
        parts = [getattr(o, k) for o in outs]
        if k in _TOKEN_AXIS:
            t = max(p.shape[1] for p in parts)
            parts = [pad_tokens(p, t) for p in parts]
        merged[k] = torch.cat(parts, dim=0)
    return replace(outs[0], **merged)


def slice_output(out: EmbeddingOutput, start: int, stop: int) -> EmbeddingOutput:
    """Rows ``start:stop`` of every field."""
    return map_output(out, lambda _k, v: v[start:stop])
