"""Resumable training checkpoints with atomic writes.

``<output_dir>/checkpoints/step-00000040/`` holds ``model.safetensors`` (the trained
module's state), ``optimizer.pt`` (AdamW state: tensors and numbers only, loaded with
``weights_only=True``), ``rng.pt`` (torch / CUDA / python / numpy generator states) and
``trainer_state.json`` (step, scheduler, sampler position, format version). A
checkpoint is written into a temporary folder and renamed into place, so a run
killed at any moment leaves either the complete checkpoint or none.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_model, save_model

from embforge.errors import CheckpointError

__all__ = [
    "collect_rng_states",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "prune_checkpoints",
    "CHECKPOINT_VERSION",
]

CHECKPOINT_VERSION = 1
_PREFIX = "step-"


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    if not isinstance(np_state, tuple):  # legacy=True (the default) gives the MT19937 tuple
        raise RuntimeError(f"unexpected numpy RNG state {type(np_state).__name__}; expected the legacy tuple")
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer,
    scheduler,
    sampler_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically; returns its folder.

    ``rng_states``: one generator state per process (``collect_rng_states``); None = this process's.
    """
    root = Path(output_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{_PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"per_rank": rng_states or [_rng_state()]}, tmp / "rng.pt")
    state = {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "scheduler": scheduler.state_dict(),
        "sampler": sampler_state,
        **(extra or {}),
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    for f in tmp.iterdir():  # data on disk before the rename makes it visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under ``output_dir``, or None."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return None
    done = sorted(
        p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / "trainer_state.json").is_file()
    )
    return done[-1] if done else None


def collect_rng_states() -> list[dict[str, Any]]:
    """Every process's generator states (a collective call under torchrun; rank order)."""
    mine = _rng_state()
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [mine]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer, scheduler, rank: int = 0
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and this ``rank``'s RNG states; returns ``trainer_state.json``."""
    p = Path(path)
    try:
        state = json.loads((p / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{p}: unreadable trainer_state.json ({e}); delete this checkpoint folder "
            f"to resume from the previous one"
        ) from None
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint version {state.get('version')} is not "
            f"{CHECKPOINT_VERSION}; resume with the embforge version that wrote it"
        )
    missing, unexpected = load_model(model, str(p / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{p}: model weights do not match the model being trained (missing "
            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); resume "
            f"with the same model settings or use a new output_dir"
        )
    optimizer.load_state_dict(torch.load(p / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(state["scheduler"])
    per_rank = torch.load(p / "rng.pt", weights_only=True)["per_rank"]
    _set_rng_state(per_rank[rank if rank < len(per_rank) else 0])
    return state


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (and stale temporary folders)."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return
    done = sorted(p for p in root.iterdir() if p.name.startswith(_PREFIX))
    for p in done[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(f".{_PREFIX}*.tmp-*"):
        if not p.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(p, ignore_errors=True)
