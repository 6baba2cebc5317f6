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

The formula is an upper bound (it ignores that torch frees most of a layer's temporaries at
once, and counts fp32 everything): on a tiny XLM-R at 4,096 tokens it allowed 1 text where 4 fit.
``measure_sub_batch_cost`` therefore measures instead, where Linux lets a process reset its peak
RSS (``/proc/self/clear_refs``): one training forward + backward of 1 and of 2 texts at the longest
length, peak RSS of each; the difference is the activation cost of one text at that length
(bytes per token = difference / length), the first peak less that cost is the fixed part (weights,
gradients, runtime), plus AdamW's two moments. ``plan_measured`` turns that into the plan;
the formula stays the fallback (other systems, no budget for the probe).

Example:
    >>> p = plan_sub_batches(22_700_000, hidden=384, layers=6, heads=12, max_length=128,
    ...                      budget_gib=3.0, precision="fp32", checkpointing=False)
    >>> p.rows_at_max_length >= 32, p.tokens_per_sub_batch == p.rows_at_max_length * 128
    (True, True)
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embforge.errors import ConfigError
from embforge.train.fast_dropout import cpu_training_kernels
from embforge.train.loop import autocast
from embforge.train.outputs import tensor_fields
from embforge.types import Batch

__all__ = [
    "MemoryPlan",
    "plan_sub_batches",
    "plan_for_backbone",
    "RUNTIME_GIB",
    "measure_sub_batch_cost",
    "plan_measured",
    "encoder_probe",
]

GIB = 1024**3
RUNTIME_GIB = 0.6  # python + torch + transformers + tokenizer, measured RSS before step 1 (CPU)
STATE_BYTES_PER_PARAM = 16  # fp32 weight, gradient, Adam m and v
SAFETY = 1.3  # allocator fragmentation, temporaries of the optimizer step and the loss
MEASURED_SAFETY = 1.15  # measured costs: allocator fragmentation, longer runs
ADAM_BYTES_PER_PARAM = 8  # AdamW's m and v (fp32), allocated at the first optimizer step
_PROC = Path("/proc/self")


@dataclass(frozen=True)
class MemoryPlan:
    """The budget split: fixed bytes, activation bytes per token, the sub-batch it allows."""

    budget_bytes: int
    fixed_bytes: int
    bytes_per_token: int
    tokens_per_sub_batch: int
    rows_at_max_length: int
    max_length: int
    source: str = "estimated (Korthikanti et al.)"

    def log_line(self) -> str:
        return (
            f"memory plan: budget {self.budget_bytes / GIB:.2f} GiB = fixed {self.fixed_bytes / GIB:.2f} GiB "
            f"(weights, gradients, AdamW, runtime) + activations {self.bytes_per_token / 1024:.1f} KiB/token "
            f"({self.source}): "
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


def _status_kib(field: str) -> int:
    for line in (_PROC / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _peak_bytes(fn: Callable[[], None]) -> int:
    """Peak RSS while ``fn`` runs (the peak is reset to the current RSS first: Linux ``clear_refs`` 5)."""
    gc.collect()
    (_PROC / "clear_refs").write_text("5")
    fn()
    return _status_kib("VmHWM") * 1024


def measure_sub_batch_cost(probe: Callable[[int], None]) -> tuple[int, int] | None:
    """(bytes of one more text at the longest length, peak bytes with one text), measured.

    ``probe(rows)`` runs one training forward + backward of ``rows`` texts at the longest length.
    It runs three times (1 text to warm up and allocate the gradients, then 1 and 2 texts, each
    with the peak RSS reset before). None where the peak cannot be reset (not Linux, no permission).
    """
    try:
        _status_kib("VmHWM")
        (_PROC / "clear_refs").write_text("5")
    except (OSError, KeyError):
        return None
    probe(1)
    one = _peak_bytes(lambda: probe(1))
    two = _peak_bytes(lambda: probe(2))
    return max(two - one, 1), one


def plan_measured(
    n_params: int, per_text: int, peak_one: int, max_length: int, budget_gib: float
) -> MemoryPlan | None:
    """The plan from ``measure_sub_batch_cost``: fixed = peak with one text - its activations + AdamW.

    None when not even one text fits (the caller falls back to ``plan_sub_batches``, whose error
    names the fix).
    """
    budget = int(budget_gib * GIB)
    fixed = max(peak_one - per_text, 0) + n_params * ADAM_BYTES_PER_PARAM
    per_token = int(MEASURED_SAFETY * per_text / max_length)
    rows = (budget - fixed) // (per_token * max_length) if budget > fixed else 0
    if rows < 1:
        return None
    source = (
        f"measured: peak RSS {peak_one / 2**20:.0f} MiB with 1 text of {max_length} tokens, "
        f"+{per_text / 2**20:.0f} MiB per text"
    )
    return MemoryPlan(budget, fixed, per_token, int(rows * max_length), int(rows), max_length, source)


def encoder_probe(
    encoder: Any, heads: tuple[str, ...], max_length: int, precision: str
) -> Callable[[int], None]:
    """``probe(rows)``: one training forward + backward of ``rows`` random texts of ``max_length`` tokens.

    Runs as training does (train mode, ``precision`` autocast, the CPU training kernels, the
    encoder's activation checkpointing); leaves no gradients, no RNG draws and the mode as it was.
    """
    vocab = int(encoder.backbone.config.vocab_size)
    gen = torch.Generator().manual_seed(0)

    def probe(rows: int) -> None:
        ids = torch.randint(min(5, vocab - 1), vocab, (rows, max_length), generator=gen)  # (rows, T)
        was_training, rng = encoder.training, torch.get_rng_state()
        encoder.train()
        try:
            with autocast(precision, encoder.device), cpu_training_kernels(encoder):
                out = encoder(Batch(ids, torch.ones_like(ids)).to(encoder.device), heads=heads)
                loss = sum(v.float().sum() for v in tensor_fields(out).values() if v.requires_grad)
                if isinstance(loss, torch.Tensor):  # inside: checkpointed layers recompute the same way
                    loss.backward()
        finally:
            if rows > 1:  # the 1-text passes keep their gradients: they belong to the fixed part
                encoder.zero_grad(set_to_none=True)
            encoder.train(was_training)
            torch.set_rng_state(rng)

    return probe
