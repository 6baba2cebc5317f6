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
of their own, with the chosen rule. Why: an English-vocabulary model's dense and multi-vector heads
score near chance on scripts it splits into characters while its sparse head still matches, so one
set of weights cannot suit both (bench/results/quality.md, per-set table). The dev score is a mean
of per-set means, so the two groups' weights are chosen independently (each group's summed
per-query nDCG@10 over its sets).

The split is kept when each group has at least ``MIN_SPLIT_QUERIES`` dev queries and its
cross-validated gain is above 0: each set's queries are dealt into ``SPLIT_CV_FOLDS`` folds; on
each fold's complement the whole choice is made again (the grid's best point or the paper's
default under ``margin``, then each group's weights), and the split's nDCG@10 on the held-out fold
is compared with the single choice's. This is model selection by expected held-out score: the
split's extra weights pay for their own selection on the dev queries, and the rule keeps whichever
option the dev data predicts is better. The paired bootstrap interval of the full-dev gain is still
reported (``gain_ci95``), no longer required to lie above 0. History: a margin of 0.01 never kept the
split for (h) (dev gain +0.005..+0.009) while the held-out dbpedia lost 0.06 to the single choice's
sparse weight; the bootstrap rule kept it on 0 to 3 of 3 seeds depending on the dev split's size,
and each time it was dropped dbpedia fell significantly below its best head (-0.05 with 300 dev
questions on 155 documents a language; bench/results/quality.md). The cross-validated gain was
above 0 for the base model and every seed of (h) on both dev splits measured (docs/quality.md).
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
#: Bootstrap draws of the coverage split's paired interval (reported).
SPLIT_BOOTSTRAP_DRAWS = 2000
#: Folds of the coverage split's cross-validation (its decision).
SPLIT_CV_FOLDS = 5


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
    # each set's candidates joined with its qrels once; every grid point is then vectorised, and
    # each point's per-query nDCG@10 is kept: the means below and the coverage split reuse it
    judged = [JudgedCandidates.build(m, d, candidate_matrix(m, candidates)) for m, d in dev]
    paper = ModelFusion("weighted", {h: w for h, w in DEFAULT_WEIGHTS.items() if h in heads})
    options = [paper, *grid_points(heads)]
    per_q = [[jc.per_query(f.fusion, f.weights, f.rrf_k) for jc in judged] for f in options]
    scores = [float(np.mean([jc.mean_of(r) for jc, r in zip(judged, rows)])) for rows in per_q]
    default = scores[0]
    order = sorted(range(1, len(options)), key=lambda i: -scores[i])  # stable: ties keep grid order
    table: list[dict[str, Any]] = [
        {"fusion": options[i].fusion, "weights": dict(options[i].weights), "ndcg@10": scores[i]}
        for i in order
    ]
    best = table[0]
    gain = scores[order[0]] - default
    keep = gain <= margin
    chosen = paper if keep else options[order[0]]
    tuned = {
        "metric": "ndcg@10" if len(dev) == 1 else f"ndcg@10, mean of {len(dev)} dev sets",
        "num_queries": sum(len(d.query_ids) for _, d in dev),
        "num_docs": sum(len(d.doc_ids) for _, d in dev),
        "paper_default_ndcg@10": round(default, 5),
        "best": {**best, "ndcg@10": round(scores[order[0]], 5)},
        "gain": round(gain, 5),
        "margin": margin,
        "decision": "kept the paper's weighted (1, 0.3, 1): gain <= margin" if keep else "best grid point",
        "top": [{**r, "ndcg@10": round(r["ndcg@10"], 5)} for r in table[:10]],
    }
    if len(dev) > 1:
        tuned["dev_sets"] = [d.name for _, d in dev]
    weights, split = dict(chosen.weights), None
    if tokenizer is not None:
        low = [chars_per_token(d.query_texts, tokenizer) <= LOW_COVERAGE_CHARS_PER_TOKEN for _, d in dev]
        grid = _Grid(options, per_q, low, margin)
        weights, split, tuned["low_coverage"] = _tune_split(grid, 0 if keep else order[0])
    return TuneResult(ModelFusion(chosen.fusion, weights, chosen.rrf_k, tuned, split), default, best, table)


@dataclass
class _Grid:
    """Every option's per-query dev nDCG@10 (option 0: the paper's default; then ``grid_points``),
    each dev set's low-coverage mask and the margin: what the coverage split decides from."""

    options: list[ModelFusion]
    per_q: list[list[np.ndarray]]  # [option][set] -> (Q_set,)
    low: list[np.ndarray]  # [set] -> (Q_set,) bool
    margin: float

    def score(self, o: int, masks: Sequence[np.ndarray], part: Sequence[np.ndarray] | None = None) -> float:
        """Mean over sets of option ``o``'s summed nDCG@10 over ``masks`` (``& part``) / the mask's size."""
        return float(
            np.mean(
                [
                    v[m if part is None else m & p].sum() / max(int(m.sum()), 1)
                    for v, m, p in zip(self.per_q[o], masks, part if part is not None else masks)
                ]
            )
        )

    def choose(self, masks: Sequence[np.ndarray]) -> tuple[int, int, int]:
        """(single, well-covered, low-coverage) option indices chosen on the queries of ``masks``,
        by the rules of ``tune_fusion_sets`` (the margin over the paper's default, the split's
        options of the single choice's rule)."""
        tot = [self.score(o, masks) for o in range(len(self.options))]
        top = 1 + int(np.argmax(tot[1:]))
        single = 0 if tot[top] - tot[0] <= self.margin else top
        return (single, *self.split_of(single, masks))

    def split_of(self, single: int, masks: Sequence[np.ndarray]) -> tuple[int, int]:
        rule = self.options[single].fusion
        same = [single] + [o for o in range(1, len(self.options)) if self.options[o].fusion == rule]
        hi = [self.score(o, masks, [~x for x in self.low]) for o in same]
        lo = [self.score(o, masks, self.low) for o in same]
        return same[int(np.argmax(hi))], same[int(np.argmax(lo))]

    def split_rows(self, hi: int, lo: int) -> list[np.ndarray]:
        return [np.where(m, b, a) for a, b, m in zip(self.per_q[hi], self.per_q[lo], self.low)]


def _tune_split(grid: _Grid, single: int) -> tuple[dict[str, float], CoverageSplit | None, dict[str, Any]]:
    """(weights, split or None, what was measured): the coverage split of the module doc."""
    low = grid.low
    n_low = int(sum(m.sum() for m in low))
    n_high = sum(len(m) for m in low) - n_low
    info: dict[str, Any] = {"max_chars_per_token": LOW_COVERAGE_CHARS_PER_TOKEN, "num_queries_low": n_low}
    chosen = grid.options[single]
    if min(n_low, n_high) < MIN_SPLIT_QUERIES:
        info["decision"] = (
            f"no split: {n_low} low-coverage and {n_high} other dev queries (< {MIN_SPLIT_QUERIES})"
        )
        return dict(chosen.weights), None, info
    everything = [np.ones(len(m), bool) for m in low]
    hi, lo = grid.split_of(single, everything)
    rows = grid.split_rows(hi, lo)
    score = float(np.mean([r.sum() / len(r) for r in rows]))
    one = grid.score(single, everything)
    ci = _stratified_bootstrap([r - v for r, v in zip(rows, grid.per_q[single])])
    cv = _cross_validated_gain(grid)
    info.update(
        {
            "weights": dict(grid.options[hi].weights),
            "low_weights": dict(grid.options[lo].weights),
            "ndcg@10": round(score, 5),
            "gain": round(score - one, 5),
            "gain_ci95": [round(x, 5) for x in ci],
            "cv_gain": round(cv, 5),
            "cv_folds": SPLIT_CV_FOLDS,
        }
    )
    if hi == lo or cv <= 0:
        info["decision"] = (
            "no split: one point suits both" if hi == lo else "no split: cross-validated gain <= 0"
        )
        return dict(chosen.weights), None, info
    info["decision"] = "split"
    return dict(grid.options[hi].weights), CoverageSplit(dict(grid.options[lo].weights)), info


def _cross_validated_gain(grid: _Grid, folds: int = SPLIT_CV_FOLDS) -> float:
    """Mean over ``folds`` folds of the split's held-out dev nDCG@10 minus the single choice's, when
    both are chosen on the other folds: every set's queries dealt into folds by a seeded shuffle."""
    rng = np.random.default_rng(0)
    fold_of = [rng.permutation(len(m)) % folds for m in grid.low]
    gains = []
    for k in range(folds):
        train = [f != k for f in fold_of]
        test = [f == k for f in fold_of]
        single, hi, lo = grid.choose(train)
        rows = grid.split_rows(hi, lo)
        split = float(np.mean([r[t].sum() / max(int(t.sum()), 1) for r, t in zip(rows, test)]))
        gains.append(split - grid.score(single, test))
    return float(np.mean(gains))


def _stratified_bootstrap(diffs: list[np.ndarray], n: int = SPLIT_BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95% interval of the mean over dev sets of each set's mean per-query difference, resampling
    every set's queries with replacement (``n`` draws, fixed seed): the paired test of the split."""
    return interval(stratified_means(diffs, n, np.random.default_rng(0)))
