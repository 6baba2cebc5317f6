"""Issue 13: can any single fusion put the hybrid above the best head on every set? (the ceiling)

For a variant that `bench/quality.py` trained and evaluated (its cached score matrices under
WORKDIR/mats), every fusion of `embforge tune-fusion`'s grid is scored on the evaluation sets
themselves, in hindsight: per set, the best grid point against the set's best single head; and the
one grid point whose worst set is best. A tuned fusion cannot do better than this in-sample ceiling,
so when even the ceiling leaves sets below their best head, no tuning of one fusion can meet
"hybrid >= best single head on every set" for that model. nDCG@10 means over the seeds.

``--bins`` adds fusions routed by the query's tokenizer coverage (characters per token,
``embforge.text.coverage``): each bin of queries gets its own grid point. ``1.5`` is the shipped
coverage split (``embforge.model.fusion.CoverageSplit``: queries at or below 1.5 characters per
token, and the rest); ``1.5,3.2`` adds a third bin for text the English vocabulary covers as whole
words (on XQuAD's dev questions, English's 10th percentile is 3.3 and the other Latin-script
languages' 90th at most 3.1). For each routing, two rows: the in-sample ceiling (every bin's point
chosen on the evaluated queries, to maximise the worst set's gain; exhaustive, at most 3 bins), and
the routing tuned on the dev split per seed as ``embforge tune-fusion`` tunes its split (the margin
rule for the single choice, then each bin's point of that rule by the mean over dev sets of the
bin's summed nDCG@10 / the set's size; every bin kept, no cross-validation).

    python bench/quality_fusion_ceiling.py --variant m3_terms -- --workdir W --steps 30 ... (quality.py's arguments)
    python bench/quality_fusion_ceiling.py --variant m3_terms --bins 1.5 1.5,3.2 -- --workdir W ...
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
from embforge.eval.tune import DEFAULT_MARGIN, grid_points  # noqa: E402
from embforge.model.fusion import ModelFusion  # noqa: E402
from embforge.scoring.fusion import DEFAULT_WEIGHTS  # noqa: E402
from embforge.text.coverage import chars_per_token  # noqa: E402

HEADS = ("dense", "sparse", "multivector")


def set_table(
    work: Path, variant: str, seeds: list[int], sets, points
) -> tuple[list[str], np.ndarray, list[str]]:
    """Per set: its best head's name, and (sets x points) grid nDCG@10 minus the best head's."""
    return set_rows(sets, *per_query_scores(work, variant, seeds, sets, points), points)


def set_rows(sets, pq: list, heads: np.ndarray, points) -> tuple[list[str], np.ndarray, list[str]]:
    """``set_table`` from ``per_query_scores``' output (``pq`` rows: the ``points``)."""
    names, gaps, lines = [], [], []
    for j, ds in enumerate(sets):
        head = heads[:, j].mean(0)  # (heads,) mean over the seeds
        best = int(np.argmax(head))
        gap = np.mean([seed[j].mean(1) for seed in pq], 0) - head[best]
        k = int(np.argmax(gap))
        names.append(ds.name)
        gaps.append(gap)
        lines.append(f"| {ds.name} | {HEADS[best]} {head[best]:.3f} | {_name(points[k])} | {gap[k]:+.3f} |")
    return names, np.array(gaps), lines


def per_query_scores(work: Path, variant: str, seeds: list[int], sets, points) -> tuple[list, np.ndarray]:
    """Each point's per-query nDCG@10, ``[seed][set]`` -> (points x queries), and (seeds x sets x
    heads) each head's nDCG@10 (``HEADS`` order), from the cached score matrices: scored once, then
    every table and routing reads these."""
    pq, heads = [], np.zeros((len(seeds), len(sets), len(HEADS)))
    for i, seed in enumerate(seeds):
        pq.append([])
        for j, ds in enumerate(sets):
            with np.load(work / "mats" / f"{variant}-s{seed}" / "512" / f"{ds.name}.npz") as z:
                mats = {h: z[h] for h in z.files}
            jc = JudgedCandidates.build(mats, ds, candidate_matrix(mats, 100))
            pq[i].append(np.array([jc.per_query(f.fusion, f.weights, f.rrf_k) for f in points]))
            heads[i, j] = [jc.per_query("weighted", {h: 1.0}).mean() for h in HEADS]
    return pq, heads


def best_head(heads: np.ndarray) -> np.ndarray:
    """(sets,) each set's best single head's nDCG@10: the head with the best mean over the seeds
    (``heads``: seeds x sets x heads), as the quality report's targets compare."""
    return heads.mean(0).max(1)


def bin_sums(pq: list, bins: list[np.ndarray]) -> np.ndarray:
    """(seeds x sets x bins x points) each point's nDCG@10 summed over the set's queries in each bin
    / the set's query count (a routing's set score: the sum over bins of its bins' points);
    ``pq`` from ``per_query_scores``, ``bins`` each set's (queries,) bin indices."""
    nb = 1 + max(int(b.max(initial=0)) for b in bins)
    g = np.zeros((len(pq), len(bins), nb, pq[0][0].shape[0]))
    for i, per_set in enumerate(pq):
        for j, (v, b) in enumerate(zip(per_set, bins)):
            g[i, j] = np.stack([np.bincount(b, weights=row, minlength=nb) for row in v], 1) / v.shape[1]
    return g


def routing_ceiling(g: np.ndarray, best: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """The per-bin points (one per bin) whose worst set gain over its best head is largest, and each
    set's gain: ``g`` (sets x bins x points) and ``best`` (sets,), means over the seeds. Exhaustive
    over the points of at most 3 bins."""
    nb, npts = g.shape[1], g.shape[2]
    if nb > 3:
        raise SystemExit("--bins: at most two thresholds (three bins) for the exhaustive ceiling")
    top, pick = -np.inf, (0,) * nb
    for first in np.ndindex(*(npts,) * max(nb - 2, 0)):
        fixed = sum((g[:, b, p] for b, p in enumerate(first)), np.zeros(len(best)))
        last = g[:, nb - 2 :, :]  # the last one or two bins, exhaustive and vectorised
        tot = (
            fixed[:, None] + last[:, 0, :]
            if nb == 1
            else fixed[:, None, None] + last[:, 0, :, None] + last[:, 1, None, :]
        )
        worst = (tot - (best[:, None] if nb == 1 else best[:, None, None])).min(0)
        k = np.unravel_index(int(np.argmax(worst)), worst.shape)
        if worst[k] > top:
            top, pick = float(worst[k]), (*first, *(int(x) for x in k))
    gains = sum((g[:, b, p] for b, p in enumerate(pick)), np.zeros(len(best))) - best
    return pick, gains


def dev_tuned_routing(dev: np.ndarray, rules: np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple[int, ...]:
    """The option a dev split picks for each bin: ``dev`` (dev sets x bins x options; option 0 the
    paper's default, then the grid), ``rules`` (options,) each option's fusion rule. The single choice
    by the margin rule of ``embforge tune-fusion``, then per bin the option of the same rule with the
    best mean over dev sets of the bin's summed nDCG@10 / the set's size."""
    total = dev.sum(1).mean(0)  # (options,) mean over dev sets of each set's nDCG@10
    top = 1 + int(np.argmax(total[1:]))
    single = 0 if total[top] - total[0] <= margin else top
    same = np.where(rules == rules[single], 0.0, -np.inf)
    return tuple(int(np.argmax(dev[:, b, :].mean(0) + same)) for b in range(dev.shape[1]))


def routing_rows(scored: dict, seeds: list[int], sets, options, thresholds) -> tuple[list[str], dict[str, int]]:
    """Two table rows for one routing (``thresholds``: the bins' upper bounds in characters per
    token): its in-sample ceiling over the grid (``options[1:]``), and the routing tuned on the dev
    sets (each seed on its own; mean over the seeds); and the RESULT fields (sets below their best
    head, each way). ``scored``: ``routing_section``'s per-query scores and characters per token."""
    points = options[1:]
    rules = np.array([o.fusion for o in options])
    t = bin_sums(scored["test"], [np.digitize(c, thresholds, right=True) for c in scored["test_cpt"]])
    d = bin_sums(scored["dev"], [np.digitize(c, thresholds, right=True) for c in scored["dev_cpt"]])
    best = scored["best"]  # (sets,); t, d: (seeds, sets, bins, options)
    pick, gains = routing_ceiling(t[..., 1:].mean(0), best)
    names = [ds.name for ds in sets]
    label = " / ".join(_bin_names(thresholds)) if thresholds else "one bin (no routing)"
    chosen = [dev_tuned_routing(d[i], rules) for i in range(len(seeds))]
    tuned = np.mean([sum(t[i, :, b, o] for b, o in enumerate(c)) for i, c in enumerate(chosen)], 0)
    tuned = tuned - best
    per_seed = " ; ".join(f"s{s}: " + ", ".join(_name(options[o]) for o in c) for s, c in zip(seeds, chosen))
    rows = [
        _routing_row(label, "in hindsight", " ; ".join(_name(points[p]) for p in pick), names, gains),
        _routing_row(label, "tuned on the dev split", per_seed, names, tuned),
    ]
    k = len(thresholds) + 1
    return rows, {
        f"routing{k}_ceiling_sets_below": int((gains < 0).sum()),
        f"routing{k}_dev_sets_below": int((tuned < 0).sum()),
    }


def _bin_names(thresholds) -> list[str]:
    edges = [0.0, *thresholds]
    middle = [f"{a:g}-{b:g}" for a, b in zip(edges[1:], thresholds[1:])]
    return [f"<= {thresholds[0]:g}", *middle, f"> {thresholds[-1]:g}"]


def _routing_row(label: str, how: str, points: str, names: list[str], gains: np.ndarray) -> str:
    below = ", ".join(f"{n} {x:+.3f}" for n, x in zip(names, gains) if x < 0) or "none"
    worst = int(np.argmin(gains))
    return (
        f"| {label} | {how} | {points} | {names[worst]} {gains[worst]:+.3f} | {int((gains < 0).sum())} of "
        f"{len(names)}: {below} | {gains.mean():+.4f} |"
    )


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


def routing_section(
    bins: list[str], variant: str, qargs, work: Path, sets, options, test: tuple[list, np.ndarray]
) -> tuple[list[str], dict[str, int]]:
    """The routing table (``--bins``): rows of ``routing_rows`` for each threshold list, and their
    RESULT fields (``test``: ``per_query_scores`` of the evaluation ``sets`` under ``options``)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(quality.base_model())
    dev = quality.dev_sets(qargs, work)
    scored = {
        "test": test[0],
        "best": best_head(test[1]),
        "dev": per_query_scores(work, variant, qargs.seeds, dev, options)[0],
        "test_cpt": [chars_per_token(ds.query_texts, tokenizer) for ds in sets],
        "dev_cpt": [chars_per_token(ds.query_texts, tokenizer) for ds in dev],
    }
    out = [
        "",
        "Fusion routed by the query's tokenizer coverage (characters per token): each bin of queries gets its "
        "own grid point (gain = routed hybrid minus the set's best head, nDCG@10, mean over the seeds).",
        "",
        "| bins (characters per token) | points chosen | points (dense / sparse / multivector) | worst set "
        "| sets below their best head | mean gain |",
        "|---|---|---|---|---|---|",
    ]
    fields: dict[str, int] = {}
    for spec in bins:
        thresholds = [float(x) for x in spec.split(",") if x]
        rows, result = routing_rows(scored, qargs.seeds, sets, options, thresholds)
        out += rows
        fields.update(result)
    return out, fields


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="m3_terms")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file (atomically)")
    ap.add_argument("--title", default="Issue 13: the ceiling of one fusion", help="--out: the file's title")
    ap.add_argument(
        "--bins",
        nargs="*",
        default=[],
        help="routings by tokenizer coverage to measure, each a comma-separated list of characters-per-token "
        "thresholds (the shipped coverage split: 1.5; at most two thresholds); reads the dev sets' cached "
        "matrices too",
    )
    ap.add_argument("quality_args", nargs=argparse.REMAINDER, help="-- then bench/quality.py's arguments")
    a = ap.parse_args()
    qargs = quality.parse_args([x for x in a.quality_args if x != "--"])
    work = Path(qargs.workdir)
    if qargs.eval_max_length != 512:
        sys.exit("the score-matrix cache read here is the 512-token one (quality.py's default)")
    points = grid_points(HEADS)
    options = [ModelFusion("weighted", dict(DEFAULT_WEIGHTS)), *points]  # 0: the paper's default (--bins)
    sets = quality.eval_sets(qargs, work)[0]
    pq, heads = per_query_scores(work, a.variant, qargs.seeds, sets, options if a.bins else points)
    grid_pq = [[v[-len(points) :] for v in seed] for seed in pq]  # the grid's rows
    names, gaps, lines = set_rows(sets, grid_pq, heads, points)
    body = report(a.variant, qargs.seeds, names, gaps, lines, points)
    if a.bins:
        rows, fields = routing_section(a.bins, a.variant, qargs, work, sets, options, (pq, heads))
        body = body[:-2] + rows + body[-2:]
        body[-1] += "".join(f" {k}={v}" for k, v in fields.items())
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
