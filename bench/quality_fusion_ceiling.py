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
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402  # bench/quality.py: the sets and the score-matrix cache
from embforge.eval.fusion import candidate_matrix  # noqa: E402
from embforge.eval.tune import _per_query_ndcg, grid_points  # noqa: E402
from embforge.model.fusion import ModelFusion  # noqa: E402

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
            cand = candidate_matrix(mats, 100)
            grid.append([_per_query_ndcg(mats, ds, cand, f).mean() for f in points])
            for h in HEADS:
                heads[h].append(_per_query_ndcg(mats, ds, cand, ModelFusion("weighted", {h: 1.0})).mean())
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="m3_terms")
    ap.add_argument("quality_args", nargs=argparse.REMAINDER, help="-- then bench/quality.py's arguments")
    a = ap.parse_args()
    qargs = quality.parse_args([x for x in a.quality_args if x != "--"])
    work = Path(qargs.workdir)
    if qargs.eval_max_length != 512:
        sys.exit("the score-matrix cache read here is the 512-token one (quality.py's default)")
    points = grid_points(HEADS)
    names, gaps, lines = set_table(work, a.variant, qargs.seeds, quality.eval_sets(qargs, work)[0], points)
    worst = gaps.min(0)
    print(
        f"variant {a.variant}, seeds {qargs.seeds}, {len(points)} grid points (weights dense / sparse / multivector)"
    )
    print("\n| set | best head | best grid point on this set | its gain over the best head |")
    print("|---|---|---|---|")
    print("\n".join(lines))
    print(
        "\n| single grid point for every set (best worst-set first) | worst set | sets below their best head | mean gain |"
    )
    print("|---|---|---|---|")
    for j in np.argsort(-worst)[:5]:
        below = int((gaps[:, j] < 0).sum())
        print(
            f"| {_name(points[j])} | {names[int(np.argmin(gaps[:, j]))]} {worst[j]:+.3f} | {below} of {len(names)} | {gaps[:, j].mean():+.3f} |"
        )


if __name__ == "__main__":
    main()
