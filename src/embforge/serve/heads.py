"""Per-head parts of ``/v1/embeddings``: which heads a request asks for, and their JSON fields.

The three BGE-M3 heads keep their OpenAI-compatible fields (``embedding``,
``sparse_embedding`` / ``sparse_tokens``, ``multivector_embedding`` / ``_shape`` /
``_scale``). Any other registered head (``embforge.model.heads.HEADS``) is asked for
with a boolean body field named after it (``{"dense2": true}``) and returned as
``<name>_embedding`` (a vector, or a matrix with ``<name>_shape``), quantized and
encoded like the dense vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from embforge.model.heads import HEADS
from embforge.scoring import truncate_dense
from embforge.serve.output import encode_matrix, encode_vector, int8_scale
from embforge.serve.schemas import EmbeddingRequest
from embforge.types import HEADS as BGE_M3_HEADS

__all__ = ["head_fields", "order_heads", "requested_heads", "unknown_fields"]

#: Request options that ask for a head besides the field named after it.
_IMPLIED_BY = {"sparse": ("sparse_tokens",)}


def order_heads(names: Iterable[str]) -> tuple[str, ...]:
    """Built-in heads first in their canonical order, then the others in registry order."""
    names = set(names)
    plugin = [h for h in HEADS.ordered() if h in names and h not in BGE_M3_HEADS]
    return (
        tuple(h for h in BGE_M3_HEADS if h in names)
        + tuple(plugin)
        + tuple(sorted(names - set(BGE_M3_HEADS) - set(plugin)))
    )


def unknown_fields(req: EmbeddingRequest) -> list[str]:
    """Extra body fields that name no registered head (they are refused as unknown fields)."""
    return [k for k in (req.model_extra or {}) if k not in HEADS]


def requested_heads(req: EmbeddingRequest) -> list[str]:
    """The heads whose output the request asks for (built-in flags and plugin-head fields)."""
    extra = req.model_extra or {}
    names = order_heads([*BGE_M3_HEADS, *extra])
    return [h for h in names if _wants(req, h)]


def _wants(req: EmbeddingRequest, head: str) -> bool:
    return any(getattr(req, f, False) is True for f in (head, *_IMPLIED_BY.get(head, ())))


def _dense(value: Any, req: EmbeddingRequest, token_strings: Callable) -> dict[str, Any]:
    dense = truncate_dense(np.asarray(value, dtype=np.float32), req.dimensions)
    out: dict[str, Any] = {"embedding": encode_vector(dense, req.quantization, req.encoding_format)}
    if req.quantization == "int8":
        out["embedding_scale"] = float(int8_scale(dense))
    return out


def _sparse(value: Any, req: EmbeddingRequest, token_strings: Callable) -> dict[str, Any]:
    w = value or {}
    out: dict[str, Any] = {"sparse_embedding": {str(t): float(x) for t, x in w.items()}}
    if req.sparse_tokens:
        out["sparse_tokens"] = {s: float(x) for s, x in zip(token_strings(list(w)), w.values())}
    return out


def _matrix(prefix: str, value: Any, req: EmbeddingRequest) -> dict[str, Any]:
    mv = np.asarray(value, dtype=np.float32)
    out: dict[str, Any] = {f"{prefix}_embedding": encode_matrix(mv, req.quantization, req.encoding_format)}
    if req.quantization == "int8":
        out[f"{prefix}_scale"] = int8_scale(mv).tolist()
    out[f"{prefix}_shape"] = list(mv.shape)
    return out


def _multivector(value: Any, req: EmbeddingRequest, token_strings: Callable) -> dict[str, Any]:
    return _matrix("multivector", value, req)


_FIELDS: Mapping[str, Callable[..., dict[str, Any]]] = {
    "dense": _dense,
    "sparse": _sparse,
    "multivector": _multivector,
}


def head_fields(head: str, value: Any, req: EmbeddingRequest, token_strings: Callable) -> dict[str, Any]:
    """The response fields of one head's value for one text."""
    fn = _FIELDS.get(head)
    if fn is not None:
        return fn(value, req, token_strings)
    x = np.asarray(value, dtype=np.float32)
    if x.ndim == 2:
        return _matrix(head, x, req)
    out: dict[str, Any] = {f"{head}_embedding": encode_vector(x, req.quantization, req.encoding_format)}
    if req.quantization == "int8":
        out[f"{head}_scale"] = float(int8_scale(x))
    return out
