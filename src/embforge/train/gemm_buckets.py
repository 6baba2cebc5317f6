"""bf16 linear layers on CPU with their row count rounded up to a few sizes, so oneDNN reuses kernels.

oneDNN runs bf16 matrix products on AMX with a kernel compiled for each new shape: a
384 -> 1536 linear layer's forward + backward on a new row count took 26 ms, the same
shape again 5.8 ms (fp32, MKL, 24 ms either way; bench/results/train_profile.md). A
length-grouped training step brings new (rows x tokens) products every step, so a
20-step bf16 run spent 1.4 s compiling linear-layer kernels (``ONEDNN_VERBOSE``).
``BucketedLinear`` pads the flattened rows of its input with zero rows up to
``bucket_rows(m)`` (a multiple of 64, at most 1/16 more rows above 1,024) and drops
the extra output rows: the same outputs and gradients (zero rows add nothing to the
weight gradient), a bounded set of shapes. It only pads where the product runs in
bf16 on CPU (autocast or bf16 weights); fp32 is left alone (MKL compiles nothing per
shape, padding would only add work).

Example:
    >>> [bucket_rows(m) for m in (1, 64, 65, 1000, 1025, 3000)]
    [64, 64, 128, 1024, 1088, 3072]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bucket_rows", "BucketedLinear", "bucket_linears"]

_QUANTUM = 64  # AMX tiles are 16 rows; 64 keeps the set of shapes small
_PER_OCTAVE = 16  # above 1,024 rows: 16 sizes per doubling (<= 6.25% padding)


def bucket_rows(m: int) -> int:
    """The padded row count for ``m`` rows: a multiple of 64, and of 2^floor(log2 m) / 16."""
    step = max(_QUANTUM, (1 << (max(m, 1).bit_length() - 1)) // _PER_OCTAVE)
    return -(-max(m, 1) // step) * step


def _bf16_cpu(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if weight.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class BucketedLinear(nn.Linear):
    """``nn.Linear`` whose bf16 CPU products use ``bucket_rows`` rows (same parameters, same results)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or not _bf16_cpu(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        x2 = x.reshape(-1, x.shape[-1])  # (M, in)
        m = x2.shape[0]
        mp = bucket_rows(m)
        if mp != m:
            x2 = F.pad(x2, (0, 0, 0, mp - m))  # (Mp, in), zero rows
        y = F.linear(x2, self.weight, self.bias)[:m]  # (M, out), a contiguous view
        return y.view(*x.shape[:-1], y.shape[-1])


def bucket_linears(model: nn.Module) -> list[nn.Linear]:
    """Turn every plain ``nn.Linear`` of ``model`` into a ``BucketedLinear`` in place (class swap:
    the parameters, hooks and state dict stay); returns them so the caller can restore the class."""
    found = [m for m in model.modules() if type(m) is nn.Linear]
    for m in found:
        m.__class__ = BucketedLinear
    return found
