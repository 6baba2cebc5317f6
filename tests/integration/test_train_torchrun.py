"""`torchrun --nproc_per_node 2 -m embforge.cli.app train ...` end to end on CPU (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.train_fixtures import build_tiny_encoder, tiny_overrides, write_data

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes(tmp_path):
    model, data = build_tiny_encoder(tmp_path / "model"), write_data(tmp_path / "data", n=32)
    out = tmp_path / "run"
    ov = tiny_overrides("m3-finetune", model, data, out) + ["loop.max_steps=3", "loop.checkpoint_every=2"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "embforge.cli.app",
        "train",
        str(ROOT / "configs" / "m3-finetune.yaml"),
        *ov,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 logs the global loss once per step
    assert {"infonce/dense", "kd/sparse", "infonce/multivector"} <= set(log[0])
    assert (out / "final" / "config.json").is_file()
    import torch

    rng = torch.load(out / "checkpoints" / "step-00000003" / "rng.pt", weights_only=True)
    assert len(rng["per_rank"]) == 2  # each rank's dropout stream is restored on resume
