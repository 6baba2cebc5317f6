"""A memory planner: GradCache sub-batch size from a memory budget instead of a guess.

Training memory = a fixed part (weights, gradients, AdamW's two moments: 16 bytes per fp32
parameter, plus the runtime: the Python process, torch and the tokenizer) + the activations
of one GradCache sub-batch (the representation pass keeps none, ``embforge.train.step``).

Activations per token and layer follow Korthikanti et al. 2023, "Reducing Activation
Recomputation in Large Transformer Models" (eq. 1): ``34 h + 5 a s`` bytes in 16-bit
precision (h hidden size, a attention heads, s sequence length; the ``5 a s`` term is the
attention matrix, its softmax and dropout mask); twice that in fp32. Backward adds the working
set of the layer it is in (its activations' gradients, about one more layer's activations). With
activation checkpointing a layer keeps only its input (``2 h`` bytes in 16-bit) and one layer's
full activations and their gradients are live during its recomputation. The plan is a token budget per sub-batch,
computed at the longest sequence (the attention term grows with s, so shorter sub-batches fit
too); ``embforge.train.step.length_groups`` cuts sub-batches by it, so short texts share a pass
with many and long texts with few (M3's length-bucketed batch sizes, Chen et al. 2024).

Example:
    >>> p = plan_sub_batches(22_700_000, hidden=384, layers=6, heads=12, max_length=128,
    ...                      budget_gib=3.0, precision="fp32", checkpointing=False)
    >>> p.rows_at_max_length >= 32, p.tokens_per_sub_batch == p.rows_at_max_length * 128
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embforge.errors import ConfigError

__all__ = ["MemoryPlan", "plan_sub_batches", "plan_for_backbone", "RUNTIME_GIB"]

GIB = 1024**3
RUNTIME_GIB = 0.6  # python + torch + transformers + tokenizer, measured RSS before step 1 (CPU)
STATE_BYTES_PER_PARAM = 16  # fp32 weight, gradient, Adam m and v
SAFETY = 1.3  # allocator fragmentation, temporaries of the optimizer step and the loss


@dataclass(frozen=True)
class MemoryPlan:
    """The budget split: fixed bytes, activation bytes per token, the sub-batch it allows."""

    budget_bytes: int
    fixed_bytes: int
    bytes_per_token: int
    tokens_per_sub_batch: int
    rows_at_max_length: int
    max_length: int

    def log_line(self) -> str:
        return (
            f"memory plan: budget {self.budget_bytes / GIB:.2f} GiB = fixed {self.fixed_bytes / GIB:.2f} GiB "
            f"(weights, gradients, AdamW, runtime) + activations {self.bytes_per_token / 1024:.1f} KiB/token: "
            f"sub-batches of <= {self.tokens_per_sub_batch} padded tokens "
            f"({self.rows_at_max_length} texts at {self.max_length} tokens)"
        )


def _activation_bytes_per_token(
    hidden: int, layers: int, heads: int, seq: int, precision: str, checkpointing: bool
) -> float:
    per_layer = 34 * hidden + 5 * heads * seq  # bytes per token in 16-bit (Korthikanti et al.)
    stored = layers * 2 * hidden if checkpointing else layers * per_layer
    total = stored + (2 * per_layer if checkpointing else per_layer)  # + backward's working set
    return total * (1.0 if precision == "bf16" else 2.0)


def plan_sub_batches(
    n_params: int,
    hidden: int,
    layers: int,
    heads: int,
    max_length: int,
    budget_gib: float,
    precision: str = "fp32",
    checkpointing: bool = False,
) -> MemoryPlan:
    """Largest sub-batch (in padded tokens) whose training step fits ``budget_gib``.

    Raises ``ConfigError`` (naming the setting and the fix) when not even one text of
    ``max_length`` tokens fits.
    """
    budget = int(budget_gib * GIB)
    fixed = int(n_params * STATE_BYTES_PER_PARAM + RUNTIME_GIB * GIB)
    per_token = int(
        SAFETY * _activation_bytes_per_token(hidden, layers, heads, max_length, precision, checkpointing)
    )
    rows = (budget - fixed) // (per_token * max_length) if budget > fixed else 0
    if rows < 1:
        need = (fixed + per_token * max_length) / GIB
        hint = "" if checkpointing else ", set model.gradient_checkpointing=true"
        raise ConfigError(
            f"loop.memory_budget_gib={budget_gib}: too small; one text of {max_length} tokens needs about "
            f"{need:.2f} GiB ({fixed / GIB:.2f} GiB fixed); raise the budget{hint} or lower the max lengths"
        )
    return MemoryPlan(budget, fixed, per_token, int(rows * max_length), int(rows), max_length)


def plan_for_backbone(
    backbone: Any, max_length: int, budget_gib: float, precision: str, checkpointing: bool
) -> MemoryPlan:
    """``plan_sub_batches`` with the sizes read from an HF backbone (``backbone.config``)."""
    cfg = backbone.config
    n_params = sum(p.numel() for p in backbone.parameters())
    return plan_sub_batches(
        n_params,
        hidden=int(cfg.hidden_size),
        layers=int(cfg.num_hidden_layers),
        heads=int(cfg.num_attention_heads),
        max_length=max_length,
        budget_gib=budget_gib,
        precision=precision,
        checkpointing=checkpointing,
    )
