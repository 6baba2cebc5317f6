"""Speed of int8 export variants against each other, interleaved in one process (issue 19).

Each variant (the syntax of bench/int8_confirm.py: ``GROUPS`` = per-token groups, ``+smooth[ALPHA]`` =
SmoothQuant) is exported from the bundled all-MiniLM-L6-v2 (dense head) and loaded through
``Encoder.from_pretrained``; the same texts (bench/encode.py's ``load_texts``) are encoded by each
variant in turn, ``--rounds`` times, so drift of a shared machine hits every variant alike. Reports
the best and median seconds per variant and the ratio to the first. Timing: run it under the bench lock.

    flock -x /tmp/embforge-bench.lock nice -n -10 python bench/int8_speed_ab.py \\
        --variants ffn_down,heads ffn_down,heads+smooth        # bench/results/int8_speed_ab.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from encode import load_texts  # noqa: E402
from int8_confirm import cpu_info, parse_variant, write_atomic  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["ffn_down,heads", "ffn_down,heads+smooth"])
    ap.add_argument("--n", type=int, default=320, help="texts encoded per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "int8_speed_ab.md"))
    args = ap.parse_args()
    import torch

    from embforge.export import export_onnx
    from embforge.model.encoder import Encoder

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    cpu = cpu_info()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    texts = load_texts(args.n)
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="int8-ab-") as tmp:
        src = Encoder.from_pretrained(heads=("dense",))
        encs = {}
        for i, v in enumerate(args.variants):
            groups, alpha = parse_variant(v)
            out = Path(tmp) / f"v{i}"
            export_onnx(src, out, quantize="int8", int8_per_row=groups, int8_smooth=alpha)
            encs[v] = Encoder.from_pretrained(str(out))
            encs[v].encode(texts[:32], batch_size=32)  # warm-up
        for r in range(args.rounds):
            for v in args.variants:
                t = time.perf_counter()
                encs[v].encode(texts, batch_size=32)
                times[v].append(time.perf_counter() - t)
            print(f"round {r + 1}: " + ", ".join(f"{v} {times[v][-1]:.2f} s" for v in args.variants), flush=True)
    load1 = os.getloadavg()[0]
    first = args.variants[0]
    lines = [
        "# int8 export variants: encoding speed, interleaved (bench/int8_speed_ab.py)",
        "",
        f"Command: `flock -x /tmp/embforge-bench.lock nice -n -10 {command}`",
        "",
        f"CPU `{cpu[0]}`, flags (/proc/cpuinfo): `{cpu[1]}`; {args.threads} threads; {args.n} texts of "
        f"bench/encode.py's set (dense head, batch 32) per round, {args.rounds} rounds, the variants in turn "
        f"in each round. Load average (1 min) before / after: {load0:.1f} / {load1:.1f}.",
        "",
        "| variant | best s | median s | best vs first | median vs first |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for v in args.variants:
        b, m = min(times[v]), statistics.median(times[v])
        lines.append(
            f"| {v} | {b:.2f} | {m:.2f} | {b / min(times[first]):.3f} | {m / statistics.median(times[first]):.3f} |"
        )
    last = args.variants[-1]
    lines += [
        "",
        f"RESULT int8_ab_best_ratio={min(times[last]) / min(times[first]):.3f} "
        f"int8_ab_median_ratio={statistics.median(times[last]) / statistics.median(times[first]):.3f}",
    ]
    text = "\n".join(lines) + "\n"
    write_atomic(Path(args.out), text)
    print(text)


if __name__ == "__main__":
    main()
