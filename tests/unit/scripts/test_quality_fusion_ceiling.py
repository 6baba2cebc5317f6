"""bench/quality_fusion_ceiling.py (issue 13): per set, the grid's best point is measured against
the set's best head from the cached score matrices; when two sets want opposite heads, every single
grid point leaves one of them below its best head."""

from __future__ import annotations

import numpy as np

from embforge.eval.datasets import RetrievalSet
from embforge.eval.tune import grid_points
from helpers.paths import load_script

ceiling = load_script("bench/quality_fusion_ceiling.py", "fusion_ceiling")

HEADS = ("dense", "sparse", "multivector")


def _set(name: str, n: int = 12) -> RetrievalSet:
    docs = [f"d{i}" for i in range(n)]
    queries = [f"q{i}" for i in range(n)]
    return RetrievalSet(name, docs, docs, queries, queries, {q: {d: 1} for q, d in zip(queries, docs)})


def _mats(right: str, rng: np.random.Generator, n: int = 12) -> dict[str, np.ndarray]:
    """``right`` ranks each query's document first by a wide margin; the other heads put a wrong
    document first by as much (scaled alike, so a fusion weighting them evenly is a toss-up)."""
    out = {}
    for h in HEADS:
        m = rng.normal(0, 0.05, (n, n)).astype(np.float32)
        if h == right:
            m[np.arange(n), np.arange(n)] += 1.0
        else:
            m[np.arange(n), (np.arange(n) + 1) % n] += 1.0
        out[h] = m
    return out


def test_opposite_sets_have_no_common_fusion(tmp_path):
    rng = np.random.default_rng(0)
    sets = [_set("lexical"), _set("semantic")]
    for seed in (0, 1):
        d = tmp_path / "mats" / f"v-s{seed}" / "512"
        d.mkdir(parents=True)
        np.savez(d / "lexical.npz", **_mats("sparse", rng))
        np.savez(d / "semantic.npz", **_mats("multivector", rng))
    points = grid_points(HEADS)
    names, gaps, lines = ceiling.set_table(tmp_path, "v", [0, 1], sets, points)
    assert names == ["lexical", "semantic"] and gaps.shape == (2, len(points))
    assert "| lexical | sparse 1.000 |" in lines[0] and "| semantic | multivector 1.000 |" in lines[1]
    assert np.allclose(gaps.max(1), 0.0)  # a perfect head: the best point matches it, none beats it
    assert (gaps.min(0) < -0.1).all()  # every single point leaves one set well below its best head


def test_report_names_the_best_single_point_and_its_result_line():
    points = grid_points(HEADS)[:3]
    gaps = np.array([[-0.05, 0.01, -0.2], [0.02, -0.03, 0.004]])  # 2 sets x 3 points
    body = ceiling.report("v", [0, 1], ["a", "b"], gaps, ["| a | ... |", "| b | ... |"], points)
    rows = [x for x in body if x.startswith("| " + points[1].fusion)]
    assert body[-1] == "RESULT ceiling_worst_set_gain=-0.030 ceiling_sets_below=1 per_set_best_point_min_gain=+0.010"
    assert rows and "| b -0.030 | 1 of 2 |" in rows[0]  # point 1: worst set b, first in the table
