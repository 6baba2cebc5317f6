"""Retrieval, STS and embedding-health metrics (no model knowledge).

Retrieval metrics follow trec_eval (and so pytrec_eval and BEIR) exactly:

* a run ``qid -> {docid: score}`` is ranked by score descending, **ties broken by
  docid descending** (trec_eval's ``comp_sim_docno``: ``strcmp(b, a)``);
* graded gain = the qrels relevance value; discount ``log2(rank + 1)`` (rank 1-based);
  the ideal DCG uses every judged document of the query, best first;
* binary measures (Recall, MRR, MAP, P) count a document relevant when its
  relevance is ``>= relevance_level`` (1 by default);
* a query with no relevant document scores 0; a query with no judgment at all is
  not evaluated (as in trec_eval).

All measures are computed on (Q, L) arrays of ranked relevances, vectorised over
queries, so they are cheap enough for training loops.

Example:
    >>> qrels = {"q1": {"d1": 2, "d2": 1}}
    >>> run = {"q1": {"d1": 0.9, "d3": 0.5, "d2": 0.1}}
    >>> m = evaluate(qrels, run, k_values=(1, 3))
    >>> round(m["ndcg@3"], 4), m["recall@1"], m["mrr@3"]
    (0.9502, 0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embforge.errors import DataError

__all__ = [
    "RankedRelevance",
    "rank_run",
    "ndcg_at_k",
    "recall_at_k",
    "mrr_at_k",
    "precision_at_k",
    "average_precision",
    "evaluate",
    "per_query",
    "run_from_scores",
    "accuracy_at_1",
    "sts_correlations",
    "spearman",
    "pearson",
    "alignment",
    "uniformity",
]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class RankedRelevance:
    """A run joined with its qrels, as arrays.

    Attributes:
        query_ids: the Q query ids (queries present in both qrels and run).
        gains: (Q, L) relevance of the document at each rank (0 past the list's end).
        lengths: (Q,) number of ranked documents per query.
        ideal: (Q, R) every judged relevance of the query, sorted descending (0-padded).
        num_rel: (Q,) number of judged documents with relevance >= relevance_level.
        relevance_level: threshold for the binary measures.
    """

    query_ids: list[str]
    gains: np.ndarray
    lengths: np.ndarray
    ideal: np.ndarray
    num_rel: np.ndarray
    relevance_level: int = 1

    @property
    def relevant(self) -> np.ndarray:
        """(Q, L) bool: the document at this rank is relevant (binary measures)."""
        return self.gains >= self.relevance_level


def _ranked_doc_ids(docs: Mapping[str, float]) -> list[str]:
    """Doc ids by score descending, ties by docid descending (trec_eval order)."""
    ids = list(docs.keys())
    scores = np.fromiter(docs.values(), dtype=np.float64, count=len(ids))
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    if len(s) > 1 and np.any(s[1:] == s[:-1]):  # ties: exact trec_eval order (rare path)
        return [d for d, _ in sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)]
    return [ids[i] for i in order]


def rank_run(
    qrels: Qrels, run: Run, *, relevance_level: int = 1, depth: int | None = None
) -> RankedRelevance:
    """Join a run with qrels into the arrays all measures use.

    Args:
        qrels: qid -> {docid: relevance (int)}.
        run: qid -> {docid: score}.
        relevance_level: minimum relevance counted as relevant by binary measures.
        depth: keep only the top ``depth`` documents per query (None = all).
    """
    qids = [q for q in run if qrels.get(q)]  # queries without any judgment are not evaluable
    ranked = []
    for q in qids:
        rel = qrels[q]
        ids = _ranked_doc_ids(run[q])
        if depth is not None:
            ids = ids[:depth]
        ranked.append([rel.get(d, 0) for d in ids])
    lengths = np.array([len(r) for r in ranked], dtype=np.int64)
    L = int(lengths.max()) if len(lengths) else 0
    gains = np.zeros((len(qids), L), dtype=np.float64)
    for i, r in enumerate(ranked):
        gains[i, : len(r)] = r
    judged = [sorted((v for v in qrels[q].values() if v > 0), reverse=True) for q in qids]
    R = max((len(j) for j in judged), default=0)
    ideal = np.zeros((len(qids), R), dtype=np.float64)
    for i, j in enumerate(judged):
        ideal[i, : len(j)] = j
    num_rel = np.array(
        [sum(1 for v in qrels[q].values() if v >= relevance_level) for q in qids], dtype=np.float64
    )
    return RankedRelevance(qids, gains, lengths, ideal, num_rel, relevance_level)


def _discount(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64))


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b > 0)
    return out


def ndcg_at_k(rr: RankedRelevance, k: int) -> np.ndarray:
    """(Q,) nDCG@k with linear graded gain (trec_eval ``ndcg_cut``)."""
    g = np.clip(rr.gains[:, :k], 0, None)
    dcg = g @ _discount(g.shape[1])
    ideal = rr.ideal[:, :k]
    idcg = ideal @ _discount(ideal.shape[1])
    return _safe_div(dcg, idcg)


def recall_at_k(rr: RankedRelevance, k: int) -> np.ndarray:
    """(Q,) relevant documents in the top k / all relevant documents (trec_eval ``recall``)."""
    return _safe_div(rr.relevant[:, :k].sum(1).astype(np.float64), rr.num_rel)


def precision_at_k(rr: RankedRelevance, k: int) -> np.ndarray:
    """(Q,) relevant documents in the top k / k (trec_eval ``P``)."""
    return rr.relevant[:, :k].sum(1) / float(k)


def mrr_at_k(rr: RankedRelevance, k: int | None = None) -> np.ndarray:
    """(Q,) reciprocal rank of the first relevant document within the top k (0 if none).

    ``k=None`` is trec_eval's ``recip_rank`` (whole list).
    """
    rel = rr.relevant if k is None else rr.relevant[:, :k]
    if rel.shape[1] == 0:
        return np.zeros(rel.shape[0])
    first = rel.argmax(1)
    hit = rel[np.arange(rel.shape[0]), first]
    return np.where(hit, 1.0 / (first + 1.0), 0.0)


def average_precision(rr: RankedRelevance, k: int | None = None) -> np.ndarray:
    """(Q,) average precision over the ranked list (trec_eval ``map``; ``k`` = ``map_cut``)."""
    rel = (rr.relevant if k is None else rr.relevant[:, :k]).astype(np.float64)
    prec = np.cumsum(rel, 1) / np.arange(1, rel.shape[1] + 1)
    return _safe_div((prec * rel).sum(1), rr.num_rel)


def per_query(
    qrels: Qrels,
    run: Run,
    k_values: Iterable[int] = (1, 3, 5, 10, 20, 100),
    *,
    relevance_level: int = 1,
) -> dict[str, dict[str, float]]:
    """Per-query measures, named ``ndcg@k recall@k mrr@k precision@k map``: qid -> name -> value."""
    rr = rank_run(qrels, run, relevance_level=relevance_level)
    cols = _measures(rr, tuple(k_values))
    return {q: {name: float(v[i]) for name, v in cols.items()} for i, q in enumerate(rr.query_ids)}


def _measures(rr: RankedRelevance, k_values: tuple[int, ...]) -> dict[str, np.ndarray]:
    for k in k_values:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise DataError(f"k_values must be positive integers, got {k!r}; e.g. k_values=(1, 10, 100)")
    cols: dict[str, np.ndarray] = {}
    for k in k_values:
        cols[f"ndcg@{k}"] = ndcg_at_k(rr, k)
    for k in k_values:
        cols[f"recall@{k}"] = recall_at_k(rr, k)
    for k in k_values:
        cols[f"mrr@{k}"] = mrr_at_k(rr, k)
    for k in k_values:
        cols[f"precision@{k}"] = precision_at_k(rr, k)
    cols["map"] = average_precision(rr)
    return cols


def evaluate(
    qrels: Qrels,
    run: Run,
    k_values: Iterable[int] = (1, 3, 5, 10, 20, 100),
    *,
    relevance_level: int = 1,
    missing: str = "zero",
) -> dict[str, float]:
    """Mean retrieval measures over queries.

    Args:
        qrels: qid -> {docid: relevance}.
        run: qid -> {docid: score}.
        k_values: cut-offs for nDCG, Recall, MRR and P.
        relevance_level: minimum relevance counted as relevant by binary measures.
        missing: what to do with qrels queries absent from the run: ``"zero"`` (they
            score 0 and count in the mean; honest default) or ``"skip"`` (average over
            the run's queries only, like pytrec_eval / BEIR).

    Returns:
        name -> mean value, plus ``num_queries``.
    """
    if missing not in ("zero", "skip"):
        raise DataError(f"missing={missing!r} is not a choice; choose from: skip, zero")
    rr = rank_run(qrels, run, relevance_level=relevance_level)
    cols = _measures(rr, tuple(k_values))
    n = len(rr.query_ids) if missing == "skip" else sum(1 for j in qrels.values() if j)
    out = {name: (float(v.sum() / n) if n else 0.0) for name, v in cols.items()}
    out["num_queries"] = float(n)
    return out


def run_from_scores(
    scores: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    k: int = 100,
) -> dict[str, dict[str, float]]:
    """Top-k run from a dense (Q, N) score matrix (vectorised argpartition)."""
    scores = np.asarray(scores)
    if scores.shape != (len(query_ids), len(doc_ids)):
        raise DataError(
            f"scores has shape {scores.shape}, expected (len(query_ids), len(doc_ids)) = "
            f"({len(query_ids)}, {len(doc_ids)})"
        )
    k = min(k, scores.shape[1])
    top = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < scores.shape[1]
        else np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    )
    top_scores = np.take_along_axis(scores, top, 1)
    return {q: {doc_ids[j]: float(s) for j, s in zip(top[i], top_scores[i])} for i, q in enumerate(query_ids)}


def accuracy_at_1(scores: np.ndarray, gold: np.ndarray | None = None) -> float:
    """Bitext mining accuracy@1: fraction of rows whose best column is the gold one.

    Args:
        scores: (Q, N) similarity of source sentence i to target sentence j.
        gold: (Q,) index of the true translation; default ``arange(Q)`` (line-aligned files).
    """
    scores = np.asarray(scores)
    gold = np.arange(scores.shape[0]) if gold is None else np.asarray(gold)
    if len(gold) != scores.shape[0]:
        raise DataError(f"gold has {len(gold)} entries for {scores.shape[0]} rows of scores")
    return float((scores.argmax(1) == gold).mean()) if len(gold) else 0.0


# ---------------------------------------------------------------- STS


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), like scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[True, xs[1:] != xs[:-1]]
    group = np.cumsum(starts) - 1
    idx = np.flatnonzero(np.r_[starts, True])
    avg = (idx[:-1] + idx[1:] - 1) / 2.0 + 1.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = avg[group]
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(_rank(np.asarray(x, dtype=np.float64)), _rank(np.asarray(y, dtype=np.float64)))


def sts_correlations(emb1: np.ndarray, emb2: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson of the cosine of each pair vs the gold scores.

    Args:
        emb1, emb2: (N, D) embeddings of the two sides (normalised here).
        gold: (N,) human similarity scores.
    """
    a = np.asarray(emb1, dtype=np.float64)
    b = np.asarray(emb2, dtype=np.float64)
    if a.shape != b.shape or a.shape[0] != len(gold):
        raise DataError(f"STS shapes disagree: emb1 {a.shape}, emb2 {b.shape}, gold {len(gold)}")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"spearman": spearman(cos, gold), "pearson": pearson(cos, gold), "num_pairs": float(len(gold))}


# ---------------------------------------------------------------- embedding health


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """SimCSE/Wang & Isola alignment: ``E ||f(x) - f(x+)||^alpha`` over positive pairs (lower = better).

    Args:
        x, y: (N, D) L2-normalised embeddings of the N positive pairs.
    """
    d = np.linalg.norm(np.asarray(x, np.float64) - np.asarray(y, np.float64), axis=1)
    return float(np.mean(d**alpha))


def uniformity(x: np.ndarray, t: float = 2.0, max_points: int = 4096, seed: int = 0) -> float:
    """Uniformity: ``log E exp(-t ||f(x) - f(y)||^2)`` over distinct pairs (lower = better).

    Args:
        x: (N, D) L2-normalised embeddings; more than ``max_points`` are subsampled
            (fixed seed) to keep the (N, N) distance matrix small.
    """
    x = np.asarray(x, np.float64)
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    n = len(x)
    if n < 2:
        raise DataError(f"uniformity needs at least 2 embeddings, got {n}")
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    iu = np.triu_indices(n, 1)
    v = -t * d2[iu]
    m = v.max()
    return float(m + np.log(np.mean(np.exp(v - m))))
