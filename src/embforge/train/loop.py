"""One explicit training loop, shared by every recipe.

A recipe supplies the model, a ``step_fn(batch, step) -> LossOutput`` that runs the
forward and backward passes (plain or GradCache) and returns detached losses, and a
resumable batch source (e.g. ``SourceBatchSampler``). The loop owns the rest: AdamW,
the schedule, bf16 autocast, gradient sync over processes, clipping, a JSONL log of
every loss part, tqdm, atomic checkpoints every N steps and exact resume.

Exact resume: model, optimizer, scheduler, sampler position and RNG states are
restored, and the log is cut back to the checkpoint's step, so a run killed with
SIGKILL and started again with the same command gives the same loss curve as an
uninterrupted run (tested).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from embforge.atomic import atomic_write_text
from embforge.model.attention import apply_attention, hf_backbones, resolve_attention, supports_flash
from embforge.train import distributed as dist_utils
from embforge.train.checkpoint import (
    collect_rng_states,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from embforge.train.fast_dropout import cpu_training_kernels
from embforge.train.precision import resolve_precision
from embforge.train.schedules import ScheduleConfig, build_scheduler
from embforge.train.settings import LoopConfig, OptimConfig
from embforge.types import LossOutput

__all__ = ["Trainer", "BatchSource", "Callback", "build_optimizer", "autocast", "TrainResult"]

# called after every step (once its log line and checkpoint are written) with (step, log record)
Callback = Callable[[int, dict[str, Any]], None]


class BatchSource(Protocol):
    """An endless, resumable iterable of batches (``SourceBatchSampler`` is one)."""

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    steps: int
    log: list[dict[str, Any]]
    output_dir: Path


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and normalisation weights (1-D parameters).

    Uses the fused kernel where torch has one for the parameters' device (CPU and CUDA
    since torch 2.4): about 7x faster than the for-each loop on CPU for MiniLM's 22M weights.
    """
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() < 2 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device / dtype
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def autocast(precision: str, device: torch.device | str = "cpu"):
    """bf16 autocast on the model's device, or a no-op for fp32 (``auto`` is resolved first)."""
    if precision == "auto":
        precision = resolve_precision(precision, device).precision
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


class Trainer:
    """Runs ``total_steps`` optimizer steps of ``step_fn`` over ``batches``.

    Args:
        model: the module whose parameters are trained and checkpointed.
        step_fn: ``(batch, step) -> LossOutput``; must call backward itself.
        batches: resumable batch source.
        loop, optim, schedule: configs.
        total_steps: steps of the whole run (the schedule spans them).
        items_per_step: examples per step (for the pairs/s column of the log).
        save_model: called with ``output_dir / "final"`` at the end (rank 0).
        config: the resolved run config, stored as ``config.json`` next to the log.
        callbacks: called as ``cb(step, record)`` after each step is logged and checkpointed
            (progress hooks, early stops, tests that stop a run at a known step).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        step_fn: Callable[[Any, int], LossOutput],
        batches: BatchSource,
        loop: LoopConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        total_steps: int,
        items_per_step: int | None = None,
        save_model: Callable[[Path], None] | None = None,
        config: dict[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.model, self.step_fn, self.batches = model, step_fn, batches
        self.loop, self.optim_cfg, self.total_steps = loop, optim, int(total_steps)
        self.items_per_step = items_per_step
        self.save_model = save_model
        self.config = config
        self.callbacks = list(callbacks)
        self.out = Path(loop.output_dir)
        self.optimizer = build_optimizer(model, optim)
        self.scheduler = build_scheduler(self.optimizer, schedule, self.total_steps)
        self.is_main = dist_utils.rank() == 0
        self.log_path = self.out / "log.jsonl"
        self.precision = "fp32"  # resolved from loop.precision and the device in fit()

    # ------------------------------------------------------------------ resume
    def _resume(self) -> int:
        ckpt = latest_checkpoint(self.out) if self.loop.resume else None
        if ckpt is None:
            if self.is_main and self.log_path.exists():
                self.log_path.unlink()  # a fresh run starts a fresh log
            return 0
        state = load_checkpoint(ckpt, self.model, self.optimizer, self.scheduler, rank=dist_utils.rank())
        self.batches.load_state_dict(state["sampler"])
        step = int(state["step"])
        if self.is_main:
            self._truncate_log(step)
            print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
        return step

    def _truncate_log(self, step: int) -> None:
        if not self.log_path.exists():
            return
        keep = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError):
                break  # a torn last line from a killed run
        atomic_write_text(self.log_path, "".join(x + "\n" for x in keep))

    # ------------------------------------------------------------------ one step
    def _optimizer_step(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        dist_utils.sync_gradients(params)
        norm = float("nan")
        if self.optim_cfg.max_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.optim_cfg.max_grad_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _record(self, step: int, out: LossOutput, norm: float, dt: float, lr: float) -> dict[str, Any]:
        rec: dict[str, Any] = {"step": step, "loss": float(out.total), "lr": lr}
        rec.update({k: float(v) for k, v in out.parts.items()})
        rec["grad_norm"] = None if math.isnan(norm) else norm
        rec["step_s"] = round(dt, 4)
        rec["time"] = round(time.perf_counter() - self._t_start, 4)
        if self.items_per_step:
            rec["items_per_s"] = round(self.items_per_step / dt, 2) if dt > 0 else None
        return rec

    def _checkpoint(self, step: int) -> None:
        every = self.loop.checkpoint_every
        if not ((every and step % every == 0) or step == self.total_steps):
            return
        rng = collect_rng_states()  # collective: every rank's dropout stream is restored
        if self.is_main:
            save_checkpoint(
                self.out,
                step,
                self.model,
                self.optimizer,
                self.scheduler,
                self.batches.state_dict(),
                rng_states=rng,
            )
            prune_checkpoints(self.out, self.loop.keep_checkpoints)

    def _train_step(self, batch: Any, step: int, device: torch.device) -> dict[str, Any]:
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.precision, device):
            out = self.step_fn(batch, step)
        if not torch.isfinite(out.total):
            raise FloatingPointError(
                f"step {step}: the loss is {float(out.total)}; lower optim.lr, "
                f"raise loss.temperature or use precision=fp32"
            )
        norm = self._optimizer_step()
        return self._record(step, out, norm, time.perf_counter() - t0, lr)

    # ------------------------------------------------------------------ the loop
    def _choose_precision(self, device: torch.device) -> None:
        """Resolve ``loop.precision`` (``auto``: bf16 where the device has it) and say which path runs."""
        choice = resolve_precision(self.loop.precision, device)
        self.precision = choice.precision
        attn = resolve_attention(
            self.loop.attention, device, self.precision, supports_flash(hf_backbones(self.model))
        )
        apply_attention(self.model, attn)
        if self.is_main:
            print(choice.log_line(), file=sys.stderr)
            print(attn.log_line(), file=sys.stderr)

    @contextlib.contextmanager
    def _cpu_kernels(self) -> Iterator[None]:
        """Fast dropout (and eager attention with it) while training on CPU; logged when it applies."""
        with cpu_training_kernels(self.model) as changed:
            if changed and self.is_main:
                print("cpu training kernels: fast dropout in " + ", ".join(changed), file=sys.stderr)
            yield

    def fit(self) -> TrainResult:
        if self.loop.threads:
            torch.set_num_threads(self.loop.threads)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.config is not None:
                atomic_write_text(self.out / "config.json", json.dumps(self.config, indent=1))
        start = self._resume()
        self._t_start = time.perf_counter()
        self.model.train()
        bar = _progress(self.loop.progress and self.is_main, start, self.total_steps)
        log: list[dict[str, Any]] = []
        it = iter(self.batches)
        device = next(self.model.parameters()).device
        self._choose_precision(device)
        with (
            open(self.log_path, "a", encoding="utf-8") if self.is_main else contextlib.nullcontext() as fh,
            self._cpu_kernels(),
        ):
            for step in range(start + 1, self.total_steps + 1):
                rec = self._train_step(next(it), step, device)
                log.append(rec)
                if fh is not None and (step % self.loop.log_every == 0 or step == self.total_steps):
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                self._checkpoint(step)
                for cb in self.callbacks:
                    cb(step, rec)
        if bar is not None:
            bar.close()
        if self.is_main and self.save_model is not None:
            self.save_model(self.out / "final")
        return TrainResult(self.total_steps, log, self.out)


def _progress(enabled: bool, start: int, total: int) -> tqdm | None:
    if not enabled:
        return None
    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)
