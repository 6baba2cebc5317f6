"""Small operations on ``EmbeddingOutput`` (concatenate, slice, detach) used by
GradCache and the distributed gather. Token-axis tensors are right-padded to a
common length when concatenated (padding carries zero weight / zero mask)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import torch
import torch.nn.functional as F

from embforge.types import EmbeddingOutput

__all__ = ["tensor_fields", "map_output", "cat_outputs", "slice_output", "num_rows", "pad_tokens"]

# fields whose dim 1 is a token axis (padded on concatenation)
_TOKEN_AXIS = {"sparse", "multivector", "multivector_mask", "input_ids", "attention_mask"}


_EXTRA = "extra:"  # prefix of plugin-head outputs (``EmbeddingOutput.extra``) in the flat field map


def tensor_fields(out: EmbeddingOutput) -> dict[str, torch.Tensor]:
    """The non-None tensor fields of ``out``; plugin-head outputs appear as ``"extra:<head>"``."""
    flat = {
        f.name: getattr(out, f.name)
        for f in fields(out)
        if f.name != "extra" and getattr(out, f.name) is not None
    }
    for head, value in (out.extra or {}).items():
        if isinstance(value, torch.Tensor):
            flat[_EXTRA + head] = value
    return flat


def _rebuild(out: EmbeddingOutput, flat: dict[str, torch.Tensor]) -> EmbeddingOutput:
    """``out`` with the fields of ``flat`` (the layout of :func:`tensor_fields`) replaced."""
    plain: dict[str, Any] = {k: v for k, v in flat.items() if not k.startswith(_EXTRA)}
    extra = {k[len(_EXTRA) :]: v for k, v in flat.items() if k.startswith(_EXTRA)}
    if extra:
        plain["extra"] = {**(out.extra or {}), **extra}
    return replace(out, **plain)


def map_output(out: EmbeddingOutput, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> EmbeddingOutput:
    """Apply ``fn(name, tensor)`` to every tensor field (plugin-head outputs included)."""
    return _rebuild(out, {k: fn(k, v) for k, v in tensor_fields(out).items()})


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
    """Concatenate along the batch axis, padding token axes to the longest.

    Built-in token-axis fields are padded by name; a plugin head's tensors are padded on dim 1
    when the parts differ there (a per-token output), else concatenated as they are.
    """
    flats = [tensor_fields(o) for o in outs]
    merged = {}
    for k in flats[0]:
        parts = [f[k] for f in flats]
        ragged = k.startswith(_EXTRA) and len({p.shape[1:] for p in parts}) > 1
        if k in _TOKEN_AXIS or ragged:
            t = max(p.shape[1] for p in parts)
            parts = [pad_tokens(p, t) for p in parts]
        merged[k] = torch.cat(parts, dim=0)
    return _rebuild(outs[0], merged)


def slice_output(out: EmbeddingOutput, start: int, stop: int) -> EmbeddingOutput:
    """Rows ``start:stop`` of every field."""
    return map_output(out, lambda _k, v: v[start:stop])
