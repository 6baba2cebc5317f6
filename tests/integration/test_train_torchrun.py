"""`torchrun --nproc_per_node 2 -m embforge.cli.app train ...` end to end on CPU (gloo)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers.torchrun import torchrun_embforge
from helpers.train_fixtures import build_tiny_encoder, tiny_overrides, write_data

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_torchrun_two_processes(tmp_path):
    model, data = build_tiny_encoder(tmp_path / "model"), write_data(tmp_path / "data", n=32)
    out = tmp_path / "run"
    ov = tiny_overrides("m3-finetune", model, data, out) + ["loop.max_steps=3", "loop.checkpoint_every=2"]
    args = ["train", str(ROOT / "configs" / "m3-finetune.yaml"), *ov]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = torchrun_embforge(args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 logs the global loss once per step
    assert {"infonce/dense", "kd/sparse", "infonce/multivector"} <= set(log[0])
    assert (out / "final" / "config.json").is_file()
    import torch

    rng = torch.load(out / "checkpoints" / "step-00000003" / "rng.pt", weights_only=True)
    assert len(rng["per_rank"]) == 2  # each rank's dropout stream is restored on resume
