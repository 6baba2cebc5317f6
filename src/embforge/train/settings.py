"""The config blocks every training recipe shares: model, optimizer, schedule, loop.

A recipe's schema (in ``embforge.train.recipes``) composes these dataclasses; the
checking machinery (types, "did you mean", all errors at once) is ``embforge.config``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Annotated, Literal

from embforge.config import Choice
from embforge.model.heads import HEADS
from embforge.model.heads.sparse import SPARSE_AGGREGATIONS, SPARSE_INITS
from embforge.model.pooling import POOLINGS
from embforge.train.schedules import ScheduleConfig

__all__ = ["ModelConfig", "OptimConfig", "ScheduleConfig", "LoopConfig"]


@dataclass
class ModelConfig:
    """Which encoder to train.

    Attributes:
        path: local directory or hub id; None = the bundled all-MiniLM-L6-v2.
        heads: heads to train, from dense, sparse, multivector.
        pooling: dense pooling override, a name of ``POOLINGS`` ("cls", "mean"); None = the checkpoint's own.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% slower).
        device: "cpu", "cuda", "cuda:1", ...; None = the local GPU when there is one (under
            torchrun: cuda:LOCAL_RANK), else cpu.
        sparse_init: init of a sparse head the checkpoint has no weights for (trained weights
            are kept): balanced (W=0, b=0.4, scaled to the other heads), ones (W=0, b=1) or idf
            (fit to the IDF of the training documents) or idf_terms (a per-token-id weight set to
            that IDF plus the contextual part); see ``embforge.model.heads.sparse``.
        sparse_aggregation: how the sparse head weighs a repeated term, saved with the model: max
            (BGE-M3) or max_tf (max x BM25 term-frequency saturation); None = the checkpoint's own.
    """

    path: str | None = None
    heads: list[str] = field(default_factory=lambda: ["dense"])
    pooling: Annotated[str | None, Choice(POOLINGS)] = None
    gradient_checkpointing: bool = False
    device: str | None = None
    sparse_init: Annotated[str, Choice(SPARSE_INITS)] = "balanced"
    sparse_aggregation: Annotated[str | None, Choice(SPARSE_AGGREGATIONS)] = None

    def validate(self) -> list[str]:
        known = HEADS.names()
        errs = [
            f"heads: unknown head {h!r}; choose from: {', '.join(known)}{_did_you_mean(h, known)}"
            for h in self.heads
            if h not in known
        ]
        if not self.heads:
            errs.append(f"heads: must name at least one head ({', '.join(known)})")
        if len(set(self.heads)) != len(self.heads):
            errs.append(f"heads: {self.heads} names a head twice; list each head once")
        return errs


@dataclass
class OptimConfig:
    """AdamW settings (decoupled weight decay, Loshchilov & Hutter 2019).

    Attributes:
        lr: peak learning rate.
        weight_decay: applied to all weights except biases and LayerNorm weights.
        betas: Adam betas.
        eps: Adam epsilon.
        max_grad_norm: clip the global gradient norm to this; 0 disables clipping.
    """

    lr: float = 2e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0

    def validate(self) -> list[str]:
        errs = []
        if self.lr <= 0:
            errs.append(f"lr: must be > 0, got {self.lr}")
        if self.max_grad_norm < 0:
            errs.append(f"max_grad_norm: must be >= 0 (0 disables clipping), got {self.max_grad_norm}")
        return errs


@dataclass
class LoopConfig:
    """The training loop (shared by every recipe that uses ``embforge.train.loop``).

    Attributes:
        output_dir: where checkpoints, the JSONL log and the final model go.
        max_steps: optimizer steps to run (None = ``epochs`` passes over the data).
        epochs: passes over the data when ``max_steps`` is None.
        batch_size: global batch (queries per step, over all processes).
        sub_batch_size: GradCache sub-batch (texts per forward with graph); None = no caching.
        memory_budget_gib: memory for training (weights, optimizer state, activations); the
            GradCache sub-batches are planned to fit it (``embforge.train.memory``). None = no plan.
        precision: auto (bf16 autocast on bf16-capable GPUs and AMX / AVX512-BF16 CPUs, fp32
            elsewhere; the run logs which), fp32 or bf16.
        attention: auto (FlashAttention-2's unpadded varlen attention on CUDA when flash_attn
            is installed, the run is bf16 and the backbone supports it; otherwise the backbone's
            own; the run logs which), sdpa, eager or flash_attention_2 (``embforge.model.attention``).
        seed: seeds data order, negative sampling, dropout and initialisation.
        log_every: write a JSONL log line every this many steps.
        checkpoint_every: save a resumable checkpoint every this many steps (0 = only at the end).
        keep_checkpoints: how many step checkpoints to keep.
        resume: continue from the newest checkpoint in ``output_dir`` if there is one.
        progress: show a tqdm progress bar.
        threads: torch intra-op threads (None = torch's default).
    """

    output_dir: str = "runs/embforge"
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 32
    sub_batch_size: int | None = None
    memory_budget_gib: float | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    attention: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    seed: int = 42
    log_every: int = 1
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    resume: bool = True
    progress: bool = True
    threads: int | None = None

    def validate(self) -> list[str]:
        errs = []
        if self.batch_size < 1:
            errs.append(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.sub_batch_size is not None and self.sub_batch_size < 1:
            errs.append(f"sub_batch_size: must be >= 1 or null (no caching), got {self.sub_batch_size}")
        if self.memory_budget_gib is not None and self.memory_budget_gib <= 0:
            errs.append(f"memory_budget_gib: must be > 0 GiB or null (no plan), got {self.memory_budget_gib}")
        if self.max_steps is not None and self.max_steps < 1:
            errs.append(f"max_steps: must be >= 1 or null (use epochs), got {self.max_steps}")
        if self.max_steps is None and self.epochs <= 0:
            errs.append(f"epochs: must be > 0 when max_steps is null, got {self.epochs}")
        if self.checkpoint_every < 0:
            errs.append(f"checkpoint_every: must be >= 0, got {self.checkpoint_every}")
        if self.keep_checkpoints < 1:
            errs.append(f"keep_checkpoints: must be >= 1, got {self.keep_checkpoints}")
        return errs


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
