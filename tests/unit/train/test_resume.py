"""Exact resume: SIGKILL a run mid-way after a checkpoint, start it again, get the same loss curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from embforge.train.recipes import load_config  # noqa: E402
from helpers.train_fixtures import build_tiny_encoder, tiny_overrides, write_data

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "simcse-unsup.yaml"  # dropout on: the RNG state must be restored too


def _overrides(model, data, out):
    ov = tiny_overrides("simcse-unsup", model, data, out)
    return [o for o in ov if not o.startswith("loop.max_steps")] + [
        "loop.max_steps=6",
        "loop.checkpoint_every=2",
        "loop.keep_checkpoints=2",
        "loop.batch_size=4",
    ]


_HANG_AFTER_STEP = """
import sys, time
from embforge.train.recipes import load_config

def hang(step, record):
    if step == 3:
        print("HANG 3", file=sys.stderr, flush=True)
        time.sleep(3600)

recipe, cfg = load_config({config!r}, {overrides!r})
recipe.run(cfg, callbacks=[hang])
"""


def _losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (out / "log.jsonl").read_text().splitlines())]


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    model, data = build_tiny_encoder(tmp_path / "model"), write_data(tmp_path / "data", n=32)
    ref_out = tmp_path / "ref"
    recipe, cfg = load_config(CONFIG, _overrides(model, data, ref_out))
    recipe.run(cfg)
    reference = _losses(ref_out)
    assert len(reference) == 6

    out = tmp_path / "killed"
    overrides = _overrides(model, data, out)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # the first run stops itself after step 3 through a Trainer callback (test code, not library code)
    hang = _HANG_AFTER_STEP.format(config=str(CONFIG), overrides=overrides)
    proc = subprocess.Popen([sys.executable, "-c", hang], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    for line in proc.stderr:  # wait until step 3 ran (checkpoint of step 2 is on disk)
        if line.startswith("HANG 3") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert [s for s, _ in _losses(out)] == [1, 2, 3]  # step 3 ran but was never checkpointed
    assert (out / "checkpoints" / "step-00000002").is_dir()

    cmd = [sys.executable, "-m", "embforge.cli.app", "train", str(CONFIG), *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stderr and "at step 2" in done.stderr
    assert _losses(out) == reference  # bit-identical curve, step 3 recomputed once
