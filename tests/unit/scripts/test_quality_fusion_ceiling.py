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


def _two_opposite_sets(work, rng: np.random.Generator) -> list[RetrievalSet]:
    """A lexical set (sparse right) and a semantic one (multi-vector right), cached for seeds 0 and 1
    as bench/quality.py caches them (``work/mats/v-s<seed>/512/<set>.npz``)."""
    for seed in (0, 1):
        d = work / "mats" / f"v-s{seed}" / "512"
        d.mkdir(parents=True)
        np.savez(d / "lexical.npz", **_mats("sparse", rng))
        np.savez(d / "semantic.npz", **_mats("multivector", rng))
    return [_set("lexical"), _set("semantic")]


def test_opposite_sets_have_no_common_fusion(tmp_path):
    rng = np.random.default_rng(0)
    sets = _two_opposite_sets(tmp_path, rng)
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


def test_bin_sums_add_up_to_the_set_means_and_bins_split_them(tmp_path):
    rng = np.random.default_rng(1)
    sets = _two_opposite_sets(tmp_path, rng)
    points = grid_points(HEADS)[:7]
    _, gaps, _ = ceiling.set_table(tmp_path, "v", [0, 1], sets, points)
    pq, heads = ceiling.per_query_scores(tmp_path, "v", [0, 1], sets, points)
    g, best = ceiling.bin_sums(pq, [np.arange(12) % 3] * 2), ceiling.best_head(heads)
    assert g.shape == (2, 2, 3, 7) and heads.shape == (2, 2, 3) and best.shape == (2,)
    assert np.allclose(g.sum(2).mean(0) - best[:, None], gaps)  # the bins partition each set
    assert np.allclose(best, 1.0)  # each set's right head is perfect
    assert np.allclose(heads[:, 0, 1], 1.0) and np.allclose(heads[:, 1, 2], 1.0)  # sparse / multi-vector
    assert (g > 0).all(axis=(0, 1, 3)).all()  # every bin holds some of each set's queries


def test_routing_ceiling_gives_each_bin_the_point_its_sets_want():
    # set a lives in bin 0 and wants point 0; set b in bin 1 and wants point 1: no single point
    # suits both, the routing does
    g = np.zeros((2, 2, 3))
    g[0, 0] = [1.0, 0.6, 0.8]
    g[1, 1] = [0.6, 1.0, 0.8]
    best = np.array([0.95, 0.95])
    pick, gains = ceiling.routing_ceiling(g, best)
    assert pick == (0, 1) and np.allclose(gains, [0.05, 0.05])
    one, gains1 = ceiling.routing_ceiling(g.sum(1, keepdims=True), best)
    assert one == (2,) and np.allclose(gains1, [-0.15, -0.15])  # the compromise point: both below
    g3 = np.concatenate([g, np.zeros((2, 1, 3))], 1)
    g3[:, 2] = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.1]]  # a third bin where set b gains with point 2
    # b needs that bin to reach its best head
    pick3, gains3 = ceiling.routing_ceiling(g3, np.array([0.95, 1.05]))
    assert pick3 == (0, 1, 2) and np.allclose(gains3, [0.05, 0.05])


def test_dev_tuned_routing_keeps_the_paper_default_under_the_margin_and_the_single_rule():
    rules = np.array(["weighted", "weighted", "rrf", "rrf"])
    dev = np.zeros((2, 2, 4))  # 2 dev sets x 2 bins x 4 options (0: the paper's default)
    dev[:, 0] = [0.50, 0.30, 0.10, 0.52]  # bin 0 totals: rrf option 3 best
    dev[:, 1] = [0.10, 0.20, 0.40, 0.00]
    # single choice: totals 0.60 / 0.50 / 0.50 / 0.52, the paper's default (option 0) stays; each bin
    # then picks among the weighted options only (the rrf options 2 and 3 are never chosen)
    assert ceiling.dev_tuned_routing(dev, rules) == (0, 1)
    dev[:, 1, 2] = 0.6  # rrf option 2 now beats the default by more than the margin: rrf's bins
    assert ceiling.dev_tuned_routing(dev, rules) == (3, 2)


def test_bin_names():
    assert ceiling._bin_names([1.5]) == ["<= 1.5", "> 1.5"]
    assert ceiling._bin_names([1.5, 3.2]) == ["<= 1.5", "1.5-3.2", "> 3.2"]
