"""``embforge tune-fusion``: pick the hybrid's fusion rule and weights on a dev split.

Every head scores every dev query against the whole corpus once; each point of a small
grid is then ranked as the hybrid index ranks (``embforge.eval.fusion.fused_run``: the
dense + sparse top-100 candidates, re-ranked by the fusion) and scored by nDCG@10. The scoring
joins each set's candidates with its qrels once (``embforge.eval.candidate_ndcg``), so a point
costs a vectorised top-10, not a run and a qrels join; the numbers are the same floats
(bench/results/tune_fusion_grid.md).

The grid (``GRID``): the rules weighted (BGE-M3's ``w1 s_dense + w2 s_lex + w3 s_mul``,
Chen et al., 2024), minmax / zscore (weighted sums of per-query normalised scores, Bruch
et al., 2023; z-scores as Qdrant's DBSF and mteb's hybrid search) and rrf (Cormack et al.,
2009), each with the dense weight in {0.25, 1}, the sparse weight in {0.1, 0.3, 0.5, 1, 2} and
the multi-vector weight in {0.5, 1, 2, 4}: 4 x 2 x 5 x 4 = 160 points.
The grid reaches a multi-vector weight of 4 and a sparse weight of 2 because a short fine-tune of a
small or monolingual backbone leaves the dense head far behind the other two (bench/quality.py,
13 sets: dense 0.49 vs sparse 0.61-0.67 / multi-vector 0.63). On the 12-language dev split the
48-point grid's best point for variant (g) sat on its edge (1 / 1 / 2, dev nDCG@10 0.671, seed 0);
the 80-point grid's best, 1 / 1 / 4, gave 0.684, and every seed of (g) and (h) chose a point
outside the old grid (bench/results/quality.md, "Tuned fusion"). The dense weight 0.25 (a
sparse : multi-vector ratio the dense-1 axes cannot reach) was added when every seed of (h) still
chose the sparse axis's edge; it moved (h)'s held-out mean nDCG@10 from 0.683 to 0.689.

The paper's weighted (1, 0.3, 1) stays unless the best point beats it on the dev split by
more than ``margin`` (default 0.01 nDCG@10: the seed-to-seed spread of a 100-query set;
weights tuned on another language moved held-out sets by -0.009..+0.009, docs/quality.md).

Coverage split (with a ``tokenizer``): queries the tokenizer covers poorly (at most
``LOW_COVERAGE_CHARS_PER_TOKEN`` characters per token, ``embforge.text.coverage``) may get weights
of their own, with the chosen rule. The dev score is a mean of per-set means, so the two groups'
weights are chosen independently (each group's summed per-query nDCG@10 over its sets). The split
is kept when each group has at least ``MIN_SPLIT_QUERIES`` dev queries and its gain over the single
choice is significant: the 95% interval of a paired bootstrap over the dev queries (each set's
queries resampled, the mean over sets as the score is taken) lies above 0. Why a paired test and not
``margin``: the split and the single choice rank the SAME queries and differ only on one group, so
query sampling is the noise to beat, and the bootstrap measures it, where ``margin`` (from the
seed-to-seed spread of trained models) does not. Measured: with ``margin`` the split was never kept
for (h) (dev gain +0.005..+0.009) while the held-out English dbpedia lost 0.06 to the single choice's
sparse weight (bench/results/quality.md); its paired interval on the dev split is reported there. Why: an English-vocabulary model's dense and multi-vector heads
score near chance on scripts it splits into characters while its sparse head still matches, so
one set of weights cannot suit both (bench/results/quality.md, per-set table).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embforge.errors import ConfigError
from embforge.eval.candidate_ndcg import JudgedCandidates
from embforge.eval.datasets import RetrievalSet
from embforge.eval.fusion import candidate_matrix
from embforge.eval.stats import interval, stratified_means
from embforge.model.fusion import CoverageSplit, ModelFusion
from embforge.model.heads import head_scores
from embforge.scoring.fusion import DEFAULT_WEIGHTS
from embforge.text.coverage import LOW_COVERAGE_CHARS_PER_TOKEN, chars_per_token

__all__ = [
    "GRID",
    "DEFAULT_MARGIN",
    "TuneResult",
    "grid_points",
    "score_matrices",
    "tune_fusion",
    "tune_fusion_sets",
]

GRID: dict[str, tuple[Any, ...]] = {
    "fusion": ("weighted", "minmax", "zscore", "rrf"),
    "dense": (0.25, 1.0),
    "sparse": (0.1, 0.3, 0.5, 1.0, 2.0),
    "multivector": (0.5, 1.0, 2.0, 4.0),
}
DEFAULT_MARGIN = 0.01
#: Fewest dev queries on each side of a coverage split.
MIN_SPLIT_QUERIES = 20
#: Bootstrap draws of the coverage split's paired test.
SPLIT_BOOTSTRAP_DRAWS = 2000


@dataclass
class TuneResult:
    """The chosen fusion, the paper default's and the best point's dev nDCG@10, every point's score."""

    chosen: ModelFusion
    default_ndcg: float
    best: dict[str, Any]
    table: list[dict[str, Any]]


def grid_points(heads: Sequence[str]) -> list[ModelFusion]:
    """The grid's (rule, weights) points for the heads present (absent heads: no weight axis)."""
    dense = GRID.get("dense", (1.0,)) if "dense" in heads else (1.0,)
    sparse = GRID["sparse"] if "sparse" in heads else (0.0,)
    multi = GRID["multivector"] if "multivector" in heads else (0.0,)
    out = []
    for rule, wd, ws, wm in itertools.product(GRID["fusion"], dense, sparse, multi):
        w = {"dense": float(wd), "sparse": float(ws), "multivector": float(wm)}
        out.append(ModelFusion(rule, {h: v for h, v in w.items() if h in heads}))
    return out


def score_matrices(
    encoder: Any,
    data: RetrievalSet,
    heads: Sequence[str],
    batch_size: int = 32,
    max_length: int | None = None,
) -> dict[str, np.ndarray]:
    """head -> (Q, D) exact scores of every query against every document."""
    kw = {"heads": tuple(heads), "batch_size": batch_size, "max_length": max_length}
    qe = encoder.encode(list(data.query_texts), role="query", **kw)
    chunks: dict[str, list[np.ndarray]] = {h: [] for h in heads}
    for a in range(0, len(data.doc_texts), 2048):
        de = encoder.encode(list(data.doc_texts[a : a + 2048]), role="document", **kw)
        for h in heads:
            chunks[h].append(np.asarray(head_scores(qe, de, h), np.float32))
    return {h: np.concatenate(c, axis=1) for h, c in chunks.items()}


def tune_fusion(
    mats: dict[str, np.ndarray], data: RetrievalSet, margin: float = DEFAULT_MARGIN, candidates: int = 100
) -> TuneResult:
    """Score the grid on ``data`` (its qrels are the dev judgements) and choose (module doc)."""
    return tune_fusion_sets([(mats, data)], margin=margin, candidates=candidates)


def tune_fusion_sets(
    dev: Sequence[tuple[dict[str, np.ndarray], RetrievalSet]],
    margin: float = DEFAULT_MARGIN,
    candidates: int = 100,
    tokenizer: Any = None,
) -> TuneResult:
    """``tune_fusion`` over several dev sets (e.g. one per language, each with its own corpus):
    every grid point is scored by its nDCG@10 averaged over the sets, so no one corpus's score
    scale decides (module doc for the grid, the margin rule and the coverage split that a
    ``tokenizer`` enables)."""
    if not dev:
        raise ConfigError("tune-fusion needs at least one dev set")
    heads = list(dev[0][0])
    if len(heads) < 2:
        raise ConfigError(f"tune-fusion needs at least two heads to fuse, got {heads}")
    if any(list(m) != heads for m, _ in dev):
        raise ConfigError(f"tune-fusion: every dev set needs the same heads {heads}")
    # each set's candidates joined with its qrels once; every grid point is then vectorised
    judged = [JudgedCandidates.build(m, d, candidate_matrix(m, candidates)) for m, d in dev]

    def ndcg(f: ModelFusion) -> float:
        return float(np.mean([jc.mean(f.fusion, f.weights, f.rrf_k) for jc in judged]))

    paper = ModelFusion("weighted", {h: w for h, w in DEFAULT_WEIGHTS.items() if h in heads})
    default = ndcg(paper)
    points = sorted(((ndcg(f), f) for f in grid_points(heads)), key=lambda p: -p[0])
    table: list[dict[str, Any]] = [
        {"fusion": f.fusion, "weights": dict(f.weights), "ndcg@10": v} for v, f in points
    ]
    best = table[0]
    gain = points[0][0] - default
    keep = gain <= margin
    chosen = paper if keep else points[0][1]
    tuned = {
        "metric": "ndcg@10" if len(dev) == 1 else f"ndcg@10, mean of {len(dev)} dev sets",
        "num_queries": sum(len(d.query_ids) for _, d in dev),
        "num_docs": sum(len(d.doc_ids) for _, d in dev),
        "paper_default_ndcg@10": round(default, 5),
        "best": {**best, "ndcg@10": round(points[0][0], 5)},
        "gain": round(gain, 5),
        "margin": margin,
        "decision": "kept the paper's weighted (1, 0.3, 1): gain <= margin" if keep else "best grid point",
        "top": [{**r, "ndcg@10": round(v, 5)} for r, (v, _) in zip(table[:10], points)],
    }
    if len(dev) > 1:
        tuned["dev_sets"] = [d.name for _, d in dev]
    weights, split = dict(chosen.weights), None
    if tokenizer is not None:
        single = default if keep else points[0][0]
        weights, split, tuned["low_coverage"] = _tune_split(dev, judged, tokenizer, chosen, single, margin)
    return TuneResult(ModelFusion(chosen.fusion, weights, chosen.rrf_k, tuned, split), default, best, table)


def _tune_split(
    dev: Sequence[tuple[dict[str, np.ndarray], RetrievalSet]],
    judged: list[JudgedCandidates],
    tokenizer: Any,
    chosen: ModelFusion,
    single: float,
    margin: float,
) -> tuple[dict[str, float], CoverageSplit | None, dict[str, Any]]:
    """(weights, split or None, what was measured): the coverage split of the module doc."""
    low = [chars_per_token(d.query_texts, tokenizer) <= LOW_COVERAGE_CHARS_PER_TOKEN for _, d in dev]
    n_low = int(sum(m.sum() for m in low))
    n_high = sum(len(m) for m in low) - n_low
    info: dict[str, Any] = {"max_chars_per_token": LOW_COVERAGE_CHARS_PER_TOKEN, "num_queries_low": n_low}
    if min(n_low, n_high) < MIN_SPLIT_QUERIES:
        info["decision"] = (
            f"no split: {n_low} low-coverage and {n_high} other dev queries (< {MIN_SPLIT_QUERIES})"
        )
        return dict(chosen.weights), None, info
    heads = list(dev[0][0])
    options = [chosen] + [f for f in grid_points(heads) if f.fusion == chosen.fusion]
    sizes = [len(d.query_ids) for _, d in dev]
    # per option and dev set: each query's nDCG@10 (low-coverage queries marked by ``low``)
    per_q = [[jc.per_query(f.fusion, f.weights, f.rrf_k) for jc in judged] for f in options]
    part_high = np.array([sum(v[~m].sum() / n for v, m, n in zip(vs, low, sizes)) for vs in per_q]) / len(dev)
    part_low = np.array([sum(v[m].sum() / n for v, m, n in zip(vs, low, sizes)) for vs in per_q]) / len(dev)
    hi, lo = int(np.argmax(part_high)), int(np.argmax(part_low))
    score = float(part_high[hi] + part_low[lo])
    diffs = [np.where(m, b, a) - one for a, b, one, m in zip(per_q[hi], per_q[lo], per_q[0], low)]
    ci = _stratified_bootstrap(diffs)
    info.update(
        {
            "weights": dict(options[hi].weights),
            "low_weights": dict(options[lo].weights),
            "ndcg@10": round(score, 5),
            "gain": round(score - single, 5),
            "gain_ci95": [round(x, 5) for x in ci],
        }
    )
    same = dict(options[hi].weights) == dict(options[lo].weights)
    if same or ci[0] <= 0:
        info["decision"] = "no split: one point suits both" if same else "no split: gain not significant"
        return dict(chosen.weights), None, info
    info["decision"] = "split"
    return dict(options[hi].weights), CoverageSplit(dict(options[lo].weights)), info


def _stratified_bootstrap(diffs: list[np.ndarray], n: int = SPLIT_BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95% interval of the mean over dev sets of each set's mean per-query difference, resampling
    every set's queries with replacement (``n`` draws, fixed seed): the paired test of the split."""
    return interval(stratified_means(diffs, n, np.random.default_rng(0)))
