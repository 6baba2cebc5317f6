"""Peak memory of the record readers given one huge JSONL line (issue 14: memory stays bounded).

Writes a JSONL file whose second line is one record of ``--mb`` MB of text (a multi-hundred-MB
single line), then, each in a fresh process, reads it with ``read_records`` and runs
``embforge validate`` on it, with the code of each ``--src`` tree given (e.g. main before the
per-line limit, and this tree). Reports the exit status, the first line of the error and the
process's peak RSS (``ru_maxrss`` of that child from ``os.wait4``), plus the CPU flags, the load
average and the children's CPU seconds / wall seconds, into bench/results/reader_rss.md.
Not a timing benchmark (the numbers are memory), so it runs under the shared lock:

    flock -s /tmp/embforge-bench.lock nice -n 10 .venv/bin/python bench/reader_rss.py \
        --src before=/path/to/old/src --src after=src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

READ = "from embforge.data.io import read_records\nn = sum(1 for _ in read_records({path!r}))\nprint(n, 'records')"


def cpu_flags() -> str:
    model, flags = "?", set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    return f"{model}; " + " ".join(f"{w}={'yes' if w in flags else 'no'}" for w in wanted)


def _commit(src: str) -> str:
    out = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", src, "status", "--porcelain", "."], capture_output=True, text=True)
    return out.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def write_file(path: Path, mb: int) -> None:
    """Line 1 a normal pair, line 2 one pair whose positive is ``mb`` MB of text, line 3 normal."""
    chunk = ("embedding retrieval " * 52428)[: 2**20]  # 1 MiB of ASCII text
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"query": "q1", "positive": "p1"}\n{"query": "q2", "positive": "')
        for _ in range(mb):
            f.write(chunk)
        f.write('"}\n{"query": "q3", "positive": "p3"}\n')


def run(cmd: list[str], src: str) -> dict:
    env = {**os.environ, "PYTHONPATH": src, "EMBFORGE_MAX_LINE_BYTES": ""}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = (proc.stdout.read() if proc.stdout else "") + (proc.stderr.read() if proc.stderr else "")
    lines = [x for x in out.splitlines() if x.strip()]
    msg = next(
        (x for x in lines if "line longer" in x or "Error" in x or "records" in x), lines[-1] if lines else ""
    )
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "rss_mib": usage.ru_maxrss / 1024,
        "cpu_per_wall": (usage.ru_utime + usage.ru_stime) / wall,
        "wall_s": wall,
        "msg": msg.strip()[:160],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, nargs="+", default=[300, 30], help="sizes of the huge line in MiB")
    ap.add_argument("--src", action="append", required=True, help="LABEL=PATH of a src tree (repeatable)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reader_rss.md")
    args = ap.parse_args()
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for mb in args.mb:
            path = Path(d) / "huge.jsonl"
            write_file(path, mb)
            for spec in args.src:
                label, src = spec.split("=", 1)
                src = str(Path(src).resolve())
                read = run([sys.executable, "-c", READ.format(path=str(path))], src)
                val = run([sys.executable, "-m", "embforge.cli.app", "validate", str(path)], src)
                for what, r in (("read_records", read), ("embforge validate", val)):
                    rows.append({"label": label, "src": src, "what": what, "mb": mb, **r})
                    print(label, mb, what, r, flush=True)
            path.unlink()
    load1 = os.getloadavg()
    lines = [
        "# Reader memory on one huge JSONL line (issue 14)",
        "",
        f"CPU: {cpu_flags()}; {os.cpu_count()} cores visible. Load average (1/5/15 min) at start "
        f"{load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, at end {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}.",
        "Input: 3 JSONL lines; line 2 is one pair whose positive is the stated MiB of text.",
        "Each row is a fresh process; peak RSS is that process's ru_maxrss (os.wait4); default limits",
        "(EMBFORGE_MAX_LINE_BYTES unset: 32 MiB per line in the trees that have the limit).",
        "",
        "| code | line MiB | command | exit | peak RSS MiB | process CPU s / wall s | wall s | first line of the output |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['mb']} | {r['what']} | {r['rc']} | {r['rss_mib']:.0f} | {r['cpu_per_wall']:.2f} | "
            f"{r['wall_s']:.1f} | `{r['msg'].replace('|', '/')}` |"
        )
    trees = ", ".join(dict.fromkeys(f"{r['label']} = {r['src']} (commit {_commit(r['src'])})" for r in rows))
    lines += [
        "",
        f"Trees: {trees}.",
        "",
        "Command:",
        "",
        "```",
        "flock -s /tmp/embforge-bench.lock nice -n 10 .venv/bin/python bench/reader_rss.py "
        + " ".join(sys.argv[1:]),
        "```",
        "",
    ]
    peak = {f"{r['label']}_{r['mb']}mib": r["rss_mib"] for r in rows if r["what"] == "embforge validate"}
    lines.append("RESULT " + " ".join(f"validate_peak_rss_mib_{k}={v:.0f}" for k, v in peak.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(lines[-1])


if __name__ == "__main__":
    main()
