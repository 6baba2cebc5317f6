"""Issue 13: can any single fusion put the hybrid above the best head on every set? (the ceiling)

For a variant that `bench/quality.py` trained and evaluated (its cached score matrices under
WORKDIR/mats), every fusion of `embforge tune-fusion`'s grid is scored on the evaluation sets
themselves, in hindsight: per set, the best grid point against the set's best single head; and the
one grid point whose worst set is best. A tuned fusion cannot do better than this in-sample ceiling,
so when even the ceiling leaves sets below their best head, no tuning of one fusion can meet
"hybrid >= best single head on every set" for that model. nDCG@10 means over the seeds.

    python bench/quality_fusion_ceiling.py --variant m3_terms -- --workdir W --steps 30 ... (quality.py's arguments)
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402  # bench/quality.py: the sets and the score-matrix cache
from embforge.data.io import atomic_write  # noqa: E402
from embforge.eval.candidate_ndcg import JudgedCandidates  # noqa: E402
from embforge.eval.fusion import candidate_matrix  # noqa: E402
from embforge.eval.tune import grid_points  # noqa: E402

HEADS = ("dense", "sparse", "multivector")


def set_table(
    work: Path, variant: str, seeds: list[int], sets, points
) -> tuple[list[str], np.ndarray, list[str]]:
    """Per set: its best head's name, and (sets x points) grid nDCG@10 minus the best head's."""
    names, gaps, lines = [], [], []
    for ds in sets:
        grid, heads = [], {h: [] for h in HEADS}
        for seed in seeds:
            with np.load(work / "mats" / f"{variant}-s{seed}" / "512" / f"{ds.name}.npz") as z:
                mats = {h: z[h] for h in z.files}
            jc = JudgedCandidates.build(mats, ds, candidate_matrix(mats, 100))
            grid.append([jc.per_query(f.fusion, f.weights, f.rrf_k).mean() for f in points])
            for h in HEADS:
                heads[h].append(jc.per_query("weighted", {h: 1.0}).mean())
        best = max(HEADS, key=lambda h: np.mean(heads[h]))
        gap = np.mean(grid, 0) - np.mean(heads[best])
        i = int(np.argmax(gap))
        names.append(ds.name)
        gaps.append(gap)
        lines.append(
            f"| {ds.name} | {best} {np.mean(heads[best]):.3f} | {_name(points[i])} | {gap[i]:+.3f} |"
        )
    return names, np.array(gaps), lines


def _name(p) -> str:
    w = " / ".join(f"{p.weights.get(h, 0):g}" for h in HEADS)
    return f"{p.fusion} {w}"


def report(variant: str, seeds: list[int], names: list[str], gaps: np.ndarray, lines: list[str], points) -> list[str]:
    """The Markdown tables and the RESULT line: per set its own best point, then the single points
    whose worst set is best (``gaps``: sets x points, grid nDCG@10 minus the set's best head)."""
    worst = gaps.min(0)
    out = [
        f"variant {variant}, seeds {seeds}, {len(points)} grid points (weights dense / sparse / multivector)",
        "",
        "| set | best head | best grid point on this set | its gain over the best head |",
        "|---|---|---|---|",
        *lines,
        "",
        "| single grid point for every set (best worst-set first) | worst set | sets below their best head | mean gain |",
        "|---|---|---|---|",
    ]
    for j in np.argsort(-worst)[:5]:
        below = int((gaps[:, j] < 0).sum())
        out.append(
            f"| {_name(points[j])} | {names[int(np.argmin(gaps[:, j]))]} {worst[j]:+.3f} | {below} of {len(names)} | {gaps[:, j].mean():+.3f} |"
        )
    j = int(np.argmax(worst))
    out += [
        "",
        f"RESULT ceiling_worst_set_gain={worst[j]:+.3f} ceiling_sets_below={int((gaps[:, j] < 0).sum())} "
        f"per_set_best_point_min_gain={gaps.max(1).min():+.3f}",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="m3_terms")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file (atomically)")
    ap.add_argument("--title", default="Issue 13: the ceiling of one fusion", help="--out: the file's title")
    ap.add_argument("quality_args", nargs=argparse.REMAINDER, help="-- then bench/quality.py's arguments")
    a = ap.parse_args()
    qargs = quality.parse_args([x for x in a.quality_args if x != "--"])
    work = Path(qargs.workdir)
    if qargs.eval_max_length != 512:
        sys.exit("the score-matrix cache read here is the 512-token one (quality.py's default)")
    points = grid_points(HEADS)
    names, gaps, lines = set_table(work, a.variant, qargs.seeds, quality.eval_sets(qargs, work)[0], points)
    body = report(a.variant, qargs.seeds, names, gaps, lines, points)
    print("\n".join(body))
    if a.out:
        head = [
            f"# {a.title}",
            "",
            f"Command: `python bench/quality_fusion_ceiling.py {shlex.join(sys.argv[1:])}` (it reads the score "
            "matrices that bench/quality.py's stages cached in the workdir). Every grid point of `embforge "
            "tune-fusion` is scored on the evaluated queries themselves, in hindsight: no tuned single fusion "
            "can do better than the second table, while the first shows each set's own best point.",
            "",
        ]
        with atomic_write(a.out) as fh:
            fh.write("\n".join(head + body) + "\n")


if __name__ == "__main__":
    main()
