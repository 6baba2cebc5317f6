"""cProfile of the contrastive training step on the bench's data (where does a step's time go?).

    PYTHONPATH=src python bench/profile_train.py --steps 3 --sub 32 --batch 128 [--precision fp32]
        [--profiler torch]

Prints the per-step seconds, the load average and the top of the profile (sorted by own time):
``--profiler cprofile`` (Python functions) or ``torch`` (``torch.profiler``: aten operators, so a
bf16 run shows which matrix products run in bf16 and what stays in fp32);
bench/results/train_profile.md holds the runs.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch

from embforge.train.recipes.contrastive import ContrastiveConfig, DataConfig, LossConfig, run
from embforge.train.settings import LoopConfig, ModelConfig, OptimConfig, ScheduleConfig
from train import SEQ, THREADS, build_pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--sub", type=int, default=32, help="GradCache sub-batch; 0 = plain step")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--profiler", default="cprofile", choices=["cprofile", "torch"])
    ap.add_argument("--rows", type=int, default=25, help="profile rows to print")
    a = ap.parse_args()
    torch.set_num_threads(THREADS)
    tmp = Path(tempfile.mkdtemp(prefix="embforge-profile-"))
    build_pairs(tmp / "pairs.jsonl")
    cfg = ContrastiveConfig(
        data=DataConfig(
            train_files=[str(tmp / "pairs.jsonl")],
            query_max_length=SEQ,
            doc_max_length=SEQ,
            one_source_per_batch=False,
        ),
        model=ModelConfig(heads=["dense"]),
        loss=LossConfig(name="infonce", temperature=0.05),
        optim=OptimConfig(lr=2e-5),
        schedule=ScheduleConfig(name="constant"),
        loop=LoopConfig(
            output_dir=str(tmp / "run"),
            max_steps=a.steps,
            batch_size=a.batch,
            sub_batch_size=a.sub or None,
            precision=a.precision,
            seed=0,
            checkpoint_every=0,
            progress=False,
            threads=THREADS,
            resume=False,
        ),
    )
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    if a.profiler == "torch":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as tprof:
            res = run(cfg)
    else:
        prof = cProfile.Profile()
        prof.enable()
        res = run(cfg)
        prof.disable()
    cpu_use = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    print(
        "step seconds",
        [r["step_s"] for r in res.log],
        "load average",
        os.getloadavg(),
        f"CPU use {cpu_use:.2f}",
    )
    if a.profiler == "torch":
        print(tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
    else:
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.rows)


if __name__ == "__main__":
    main()
