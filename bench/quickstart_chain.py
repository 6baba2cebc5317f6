"""Time the README's command-line quickstart (mine -> train -> eval -> index -> search) as written.

Reads the README's bash block (the one with embforge mine/train/eval/index/search), runs each of
its commands in order with ``bash -e`` in a fresh folder on the bundled all-MiniLM-L6-v2 (the
block's own model), and writes bench/results/quickstart_chain.md: per command wall seconds and
CPU seconds (user + system of the command's processes, from ``getrusage(RUSAGE_CHILDREN)``), the
load average before and after, and the CPU flags. Run under the shared lock (it is a wall-time
check of a user-facing chain on the shared machine, not a speed comparison):

    flock -s /tmp/embforge-bench.lock nice -n 10 python bench/quickstart_chain.py
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "quickstart_chain.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = [
        m.group(1)
        for m in FENCE.finditer(text)
        if all(f"embforge {c} " in m.group(1) for c in ("mine", "train", "eval", "index", "search"))
    ]
    if len(found) != 1:
        sys.exit(f"expected one quickstart block in README.md, found {len(found)}")
    return found[0]


def commands(code: str) -> list[str]:
    """The block's commands, continuation lines joined (the first line sets $DE)."""
    return [c for c in code.replace("\\\n", " ").splitlines() if c.strip()]


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
            return " ".join(keep)
    return "(unknown)"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "(unknown)"


def main() -> None:
    code = block()
    work = Path(tempfile.mkdtemp(prefix="quickstart-chain-"))
    shutil.copytree(ROOT / "configs", work / "configs")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MPLBACKEND": "Agg"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("EMBFORGE_DEFAULT_MODEL", None)  # the bundled model, as the README runs it
    rows, prefix = [], ""
    load0 = os.getloadavg()
    for cmd in commands(code):
        if cmd.startswith("DE="):
            prefix = cmd + "\n"
            continue
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        res = subprocess.run(
            ["bash", "-e", "-c", prefix + cmd], cwd=work, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        name = " ".join(cmd.split()[:2])
        rows.append((name, wall, cpu, os.getloadavg()[0]))
        print(f"{name}: {wall:.1f} s wall, {cpu:.1f} CPU s, rc {res.returncode}", flush=True)
        if res.returncode:
            sys.exit(f"{cmd}\nfailed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    load1 = os.getloadavg()
    mined = (work / "mined.jsonl").read_text().count("\n")
    short = work / "mined.jsonl.short.jsonl"
    n_short = short.read_text().count("\n") if short.exists() else 0
    total_wall, total_cpu = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines = [
        "# README command-line quickstart: wall time on the bundled model",
        "",
        "The README's bash block (mine -> train -> eval -> index -> search), run as written, one command at "
        "a time, on the bundled all-MiniLM-L6-v2, from a fresh folder. CPU s = user + system seconds of "
        "the command's processes; CPU/wall below 1 means the shared machine gave it less than a core.",
        "",
        "| command | wall s | CPU s | CPU / wall | load average after |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| `{n}` | {w:.1f} | {c:.1f} | {c / w:.2f} | {ld:.1f} |" for n, w, c, ld in rows],
        f"| total | {total_wall:.1f} | {total_cpu:.1f} | {total_cpu / total_wall:.2f} | |",
        "",
        f"Mined: {mined} queries with their negatives in mined.jsonl, {n_short} with fewer in "
        "mined.jsonl.short.jsonl (counted and set aside by `--short separate`).",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; CPU flags (avx/amx/fma/sse4): {cpu_flags()}.",
        f"Load average (1/5/15 min) before: {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, "
        f"after: {load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}.",
        "",
        "Command: `flock -s /tmp/embforge-bench.lock nice -n 10 python bench/quickstart_chain.py`",
        "",
        f"RESULT chain_wall_s={total_wall:.0f} chain_cpu_s={total_cpu:.0f} mined_queries={mined} "
        f"short_queries={n_short}",
    ]
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
