"""Cheaper dropout for CPU training: the same Bernoulli masks from fewer random draws.

Dropout (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting") zeroes each element with probability ``p`` and scales the kept ones by
``1 / (1 - p)``. On CPU, torch draws one Mersenne-Twister number per element (``bernoulli_``)
and keeps a full-width float mask: 12% of a MiniLM training step in bf16
(bench/results/train_profile.md). Here one 64-bit draw gives four 16-bit uniforms, each compared
with ``round(p * 65536)``: the same Bernoulli distribution with ``p`` rounded to a multiple of
2^-16 (0.1 -> 0.100006), a one-byte mask saved for backward, about 3x faster than ``F.dropout``
on 2 cores. The masks come from torch's CPU generator, so seeding and the GradCache replay
(``embforge.train.step``, which restores the RNG state) reproduce them exactly.

Attention-probability dropout forces ``scaled_dot_product_attention`` on CPU onto its unfused
"math" path, which also upcasts bf16 inputs to fp32; ``cpu_training_kernels`` therefore runs
the attention of HF encoders with dropout as HF's eager attention does (scores, fp32 softmax
cast back to the input dtype, dropout, product: Vaswani et al. 2017), with this dropout. Both
apply only to CPU tensors in training mode with ``p > 0``; everything else (GPU, eval, p = 0,
causal attention) takes torch's / HF's own path. The model's regularisation is unchanged.

Example:
    >>> torch.manual_seed(0) is not None
    True
    >>> keep = dropout_mask((4, 1000), 0.25)
    >>> keep.dtype, 0.72 < keep.float().mean().item() < 0.78
    (torch.bool, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from embforge.train.gemm_buckets import bucket_linears

__all__ = ["dropout_mask", "fast_dropout", "FastDropout", "cpu_training_kernels", "ATTENTION_NAME"]

ATTENTION_NAME = "embforge_cpu_train"
_LEVELS = 65536  # 16-bit uniforms


def dropout_mask(
    shape: tuple[int, ...] | torch.Size, p: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Bool keep-mask of ``shape``: each element True with probability ``1 - round(p * 2^16) / 2^16``."""
    n = math.prod(shape)
    draws = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    u16 = draws.view(torch.int16)[:n]  # (n,) uniform on [-32768, 32767]
    return (u16 >= round(p * _LEVELS) - _LEVELS // 2).view(shape)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = dropout_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with ``dropout_mask``'s masks on CPU (torch's own elsewhere)."""
    if not training or p == 0.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    if p == 1.0:
        return torch.zeros_like(x)
    return _Dropout.apply(x, p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` computing ``fast_dropout`` (same ``p``, no parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def _eager_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """HF's attention signature: (B, H, Q, D) inputs -> (B, Q, H, D) output, eager with fast dropout."""
    causal = kwargs.get("is_causal", getattr(module, "is_causal", False))
    if dropout == 0.0 or query.device.type != "cpu" or causal or key.shape[1] != query.shape[1]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scale  # (B, H, Q, K)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = fast_dropout(probs, dropout, module.training)
    return torch.matmul(probs.to(value.dtype), value).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    """Register ``ATTENTION_NAME`` with transformers (this attention, sdpa's masks); idempotent."""
    AttentionInterface.register(ATTENTION_NAME, _eager_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


@contextlib.contextmanager
def cpu_training_kernels(model: nn.Module) -> Iterator[list[str]]:
    """While training ``model`` on CPU: ``FastDropout`` for every ``nn.Dropout``, HF sdpa attention
    with dropout run eagerly with it, and linear layers whose bf16 products use a few row counts
    (``embforge.train.gemm_buckets``); restored on exit (nothing of it is saved with the model).

    Yields what changed (for the log): empty on GPU, where torch's fused dropout is kept.
    """
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":
        yield []
        return
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p > 0:
                swapped.append((parent, name, child))
                setattr(parent, name, FastDropout(child.p, child.inplace).train(child.training))
    _register_attention()
    configs = _sdpa_configs(model)
    for cfg in configs:
        cfg._attn_implementation = ATTENTION_NAME
    linears = bucket_linears(model)
    changed = [f"{len(swapped)} dropout layers"] if swapped else []
    changed += (
        [f"{len(configs)} sdpa attention config(s) -> eager bf16-friendly attention"] if configs else []
    )
    changed += [f"{len(linears)} linear layers with bucketed bf16 row counts"] if linears else []
    try:
        yield changed
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for cfg in configs:
            cfg._attn_implementation = "sdpa"
        for lin in linears:
            lin.__class__ = nn.Linear


def _sdpa_configs(model: nn.Module) -> list[Any]:
    """The distinct HF configs in ``model`` that run sdpa attention with attention dropout."""
    seen: dict[int, Any] = {}
    for m in model.modules():
        cfg = getattr(m, "config", None)
        p = getattr(cfg, "attention_probs_dropout_prob", getattr(cfg, "attention_dropout", 0.0))
        if getattr(cfg, "_attn_implementation", None) == "sdpa" and isinstance(p, float) and p > 0:
            seen[id(cfg)] = cfg
    return list(seen.values())
