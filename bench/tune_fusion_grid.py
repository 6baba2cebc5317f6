"""``embforge tune-fusion``'s grid: the run path against ``JudgedCandidates``, back to back.

The grid scores 160 fusion points on every dev set. Before, each point built a
``{query: {doc: score}}`` run (``embforge.eval.fusion.fused_run``) and joined it with the qrels
(``metrics.evaluate``); now each set's candidates are joined with its qrels once
(``embforge.eval.candidate_ndcg.JudgedCandidates``) and every point is a vectorised top-10.
This script times both on the same score matrices and checks that every point's nDCG@10 is
the same float on both paths.

Shape (default): the issue-13 dev split at ``--dev-queries 300``: 14 sets x 300 queries x 240
documents, three heads, the dense + sparse top-100 candidates. Scores are random with one
relevant document per query made findable (the cost does not depend on the values); pass
``--queries`` / ``--docs`` / ``--sets`` for other shapes. Timing belongs under the bench lock:

    flock -x /tmp/embforge-bench.lock python bench/tune_fusion_grid.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

HEADS = ("dense", "sparse", "multivector")


def cpu_flags() -> str:
    """The SIMD/matrix flags of this CPU, read from /proc/cpuinfo (never assumed)."""
    from embforge.model.precision import cpu_flags as flags

    want = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    have = flags()
    return " ".join(f for f in want if f in have) or "none of avx2/avx512/amx"


def dev_split(n_sets: int, nq: int, nd: int, seed: int = 0):
    """``n_sets`` (score matrices, RetrievalSet) pairs; query i's relevant document is i mod nd."""
    from embforge.eval.datasets import RetrievalSet

    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_sets):
        mats = {h: rng.normal(0, 1, (nq, nd)).astype(np.float32) for h in HEADS}
        for h in HEADS:
            mats[h][np.arange(nq), np.arange(nq) % nd] += rng.uniform(0, 3, nq).astype(np.float32)
        qids, dids = [f"s{s}q{i}" for i in range(nq)], [f"s{s}d{j}" for j in range(nd)]
        qrels = {q: {dids[i % nd]: 1} for i, q in enumerate(qids)}
        out.append((mats, RetrievalSet(f"dev{s}", dids, dids, qids, qids, qrels)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=14)
    ap.add_argument("--queries", type=int, default=300, help="per set")
    ap.add_argument("--docs", type=int, default=240, help="per set")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tune_fusion_grid.md"))
    args = ap.parse_args(argv)

    from embforge.eval import metrics as M
    from embforge.eval.candidate_ndcg import JudgedCandidates
    from embforge.eval.fusion import candidate_matrix, fused_run
    from embforge.eval.tune import grid_points

    dev = dev_split(args.sets, args.queries, args.docs)
    points = grid_points(HEADS)
    cands = [candidate_matrix(m, args.candidates) for m, _ in dev]

    t0 = time.perf_counter()
    slow = []
    for f in points:
        vals = []
        for (mats, ds), cand in zip(dev, cands):
            run = fused_run(mats, ds.query_ids, ds.doc_ids, f.fusion, f.weights, 10, cand=cand, rrf_k=f.rrf_k)
            vals.append(M.evaluate(ds.qrels, run, (10,))["ndcg@10"])
        slow.append(vals)
    t_slow = time.perf_counter() - t0

    t0 = time.perf_counter()
    judged = [JudgedCandidates.build(m, ds, c) for (m, ds), c in zip(dev, cands)]
    t_build = time.perf_counter() - t0
    fast = [[jc.mean(f.fusion, f.weights, f.rrf_k) for jc in judged] for f in points]
    t_fast = time.perf_counter() - t0

    same = sum(a == b for rs, rf in zip(slow, fast) for a, b in zip(rs, rf))
    total = len(points) * len(dev)
    load = os.getloadavg()
    shape = (
        f"{args.sets} sets x {args.queries} queries x {args.docs} documents, top-{args.candidates} candidates"
    )
    lines = [
        "# tune-fusion grid: the run path vs JudgedCandidates (same score matrices, back to back)",
        "",
        f"Command: `python bench/tune_fusion_grid.py --sets {args.sets} --queries {args.queries} "
        f"--docs {args.docs} --candidates {args.candidates}`",
        "",
        f"**Machine:** {platform.processor() or platform.machine()}, CPU flags: {cpu_flags()}; "
        f"{os.cpu_count()} cores; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        f"**Grid:** {len(points)} points (`embforge.eval.tune.GRID`) on {shape}; random scores.",
        "",
        "| path | seconds for the grid | per point |",
        "| --- | ---: | ---: |",
        f"| `fused_run` + `metrics.evaluate` (before) | {t_slow:.1f} | {1000 * t_slow / len(points):.0f} ms |",
        f"| `JudgedCandidates` (join once: {t_build:.2f} s) | {t_fast:.1f} | {1000 * t_fast / len(points):.0f} ms |",
        "",
        f"Same nDCG@10 float on both paths: {same} of {total} (point, set) pairs.",
        "",
        f"RESULT grid_speedup={t_slow / t_fast:.1f} identical={same}/{total}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if same != total:
        raise SystemExit(f"the two paths disagree on {total - same} of {total} (point, set) pairs")
    from embforge.data.io import atomic_write

    with atomic_write(Path(args.out)) as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
