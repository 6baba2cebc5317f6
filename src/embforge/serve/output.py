"""Rows of numpy outputs -> JSON-ready values (float lists, base64, int8, binary).

base64 is of the little-endian bytes, exactly as OpenAI encodes float32
embeddings (``np.frombuffer(base64.b64decode(s), "<f4")`` decodes them); int8
and packed binary vectors are base64 of their raw bytes.
"""

from __future__ import annotations

import base64

import numpy as np

__all__ = ["quantize", "encode_vector", "encode_matrix", "dequantize_int8"]


def quantize(x: np.ndarray, kind: str) -> np.ndarray:
    """Quantize L2-normalised vectors (last axis).

    - ``float32``: unchanged (as little-endian float32).
    - ``int8``: ``round(127 * x)`` clipped to [-127, 127] (components of unit vectors
      lie in [-1, 1]; ``dequantize_int8`` maps back).
    - ``binary``: 1 bit per component (x > 0), packed 8 per byte, big-endian bit
      order as ``numpy.packbits``; the last byte is zero-padded.

    Example:
        >>> quantize(np.array([0.6, -0.8], dtype=np.float32), "int8").tolist()
        [76, -102]
        >>> quantize(np.array([0.5, -0.5, 0.1], dtype=np.float32), "binary").tolist()
        [160]
    """
    x = np.asarray(x, dtype=np.float32)
    if kind == "float32":
        return x.astype("<f4", copy=False)
    if kind == "int8":
        return np.clip(np.rint(x * 127.0), -127, 127).astype(np.int8)
    if kind == "binary":
        return np.packbits(x > 0, axis=-1)
    raise ValueError(f"unknown quantization {kind!r}; choose from: binary, float32, int8")


def dequantize_int8(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float32) / 127.0


def encode_vector(x: np.ndarray, quantization: str, encoding_format: str) -> list | str:
    """One vector (D,) as a JSON list or a base64 string."""
    q = quantize(x, quantization)
    if encoding_format == "base64":
        return base64.b64encode(q.tobytes()).decode("ascii")
    return q.tolist()


def encode_matrix(x: np.ndarray, quantization: str, encoding_format: str) -> list | str:
    """A (T, M) matrix (multi-vector) as nested lists or one base64 string (row-major)."""
    q = quantize(x, quantization)
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(q).tobytes()).decode("ascii")
    return q.tolist()
