"""Matryoshka truncation (Kusupati et al., 2022, "Matryoshka Representation Learning").

A Matryoshka-trained dense vector keeps most of its quality in its first ``dim``
coordinates; using a prefix means truncating and L2-renormalising it. This is the
only place in embforge that does so: the model, the losses, the server, the
evaluation and the indexes all call :func:`truncate_dense`.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["truncate_dense"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def truncate_dense(x: ArrayT, dim: int | None, normalize: bool = True) -> ArrayT:
    """Keep the first ``dim`` dims of (..., D) vectors and L2-renormalise them.

    Works on torch tensors (differentiable) and numpy arrays alike and returns the
    same type. ``dim=None`` or ``dim >= D`` returns ``x`` unchanged.

    Example:
        >>> truncate_dense(np.array([[3.0, 4.0, 12.0]]), 2)
        array([[0.6, 0.8]])
        >>> truncate_dense(torch.tensor([[3.0, 4.0, 12.0]]), 2)
        tensor([[0.6000, 0.8000]])
    """
    if dim is None or dim >= x.shape[-1]:
        return x
    x = x[..., :dim]
    if not normalize:
        return x
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.normalize(x, dim=-1)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12).astype(x.dtype, copy=False)
