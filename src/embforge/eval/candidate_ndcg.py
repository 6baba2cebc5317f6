"""nDCG@k of many fusions of the same candidates, without building runs.

``embforge tune-fusion`` scores a grid of fusion rules and weights on the same dev
candidates. Building a ``{query: {doc: score}}`` run for every point and joining it with the
qrels (``metrics.evaluate(qrels, fused_run(...))``) spent about three quarters of the grid's
time in Python dicts and sorts (profile of 14 dev sets x 3,840 queries: 165 s of 173 s in
``fused_run`` + ``metrics.evaluate``). :class:`JudgedCandidates` joins a set's candidates
with its qrels once; each fusion is then a vectorised top-k and a gain lookup.

The numbers are those of the slow path to the last bit (``tests/unit/eval/test_candidate_ndcg.py``
checks equality on random scores with ties, graded and unjudged queries, padding and every
fusion rule): the top k are chosen as ``fusion.top_rows`` chooses them (float32 scores), ranked
as trec_eval ranks a run (score descending, ties by doc id descending; ``metrics.rank_run``),
with linear graded gain and the ideal DCG over every judged document (``metrics.ndcg_at_k``),
averaged as ``metrics.evaluate(missing="zero")`` averages: over the qrels' judged queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embforge.eval.datasets import RetrievalSet
from embforge.eval.fusion import fuse_rows, gather
from embforge.eval.metrics import _discount  # the very discounts of metrics.ndcg_at_k: same floats
from embforge.scoring.fusion import RRF_K

__all__ = ["JudgedCandidates"]


@dataclass(frozen=True)
class JudgedCandidates:
    """One retrieval set's candidates joined with its judgements (build with :meth:`build`).

    Attributes:
        pos: (Q, C) corpus positions of each query's candidates, -1 = padding.
        scores: head -> (Q, C) exact scores of the candidates (nan at padding).
        gains: (Q, C) qrels relevance of each candidate (0 when unjudged or padding).
        id_rank: (Q, C) rank of each candidate's doc id in ascending string order (the tie-break).
        idcg: (Q,) ideal DCG@k of each query (every judged document, best first).
        evaluable: (Q,) the qrels judge the query (a query without judgements is not evaluated).
        denominator: queries the mean is taken over (qrels entries with a judgement).
        k: the cut-off.
    """

    pos: np.ndarray
    scores: Mapping[str, np.ndarray]
    gains: np.ndarray
    id_rank: np.ndarray
    idcg: np.ndarray
    evaluable: np.ndarray
    denominator: int
    k: int = 10

    @classmethod
    def build(
        cls, mats: Mapping[str, np.ndarray], data: RetrievalSet, cand: np.ndarray, k: int = 10
    ) -> JudgedCandidates:
        """Join ``data``'s qrels with the candidates ``cand`` (Q, C) of the (Q, D) score ``mats``.

        Example:
            >>> from embforge.eval.datasets import RetrievalSet
            >>> ds = RetrievalSet("t", ["a", "b"], ["x", "y"], ["q"], ["what"], {"q": {"b": 1}})
            >>> jc = JudgedCandidates.build({"dense": np.array([[0.9, 0.5]])}, ds, np.array([[0, 1]]))
            >>> round(jc.mean("weighted", {"dense": 1.0}), 4)
            0.6309
        """
        pos = np.asarray(cand, np.int64)
        doc_ids = list(data.doc_ids)
        order = sorted(range(len(doc_ids)), key=doc_ids.__getitem__)
        doc_rank = np.empty(len(doc_ids), np.int64)
        doc_rank[order] = np.arange(len(doc_ids))
        ok = pos >= 0
        id_rank = np.where(ok, doc_rank[np.maximum(pos, 0)], -1)
        gains = np.zeros(pos.shape, np.float64)
        evaluable = np.zeros(len(data.query_ids), bool)
        judged: list[list[int]] = []
        for i, q in enumerate(data.query_ids):
            rel = data.qrels.get(q) or {}
            evaluable[i] = bool(rel)
            judged.append(sorted((v for v in rel.values() if v > 0), reverse=True))
            if rel:
                gains[i, ok[i]] = [rel.get(doc_ids[j], 0) for j in pos[i][ok[i]]]
        # the ideal DCG as metrics.rank_run + ndcg_at_k compute it: a (Q, R) matrix, cut at k
        ideal = np.zeros((len(judged), max((len(j) for j in judged), default=0)), np.float64)
        for i, j in enumerate(judged):
            ideal[i, : len(j)] = j
        ideal = ideal[:, :k]
        idcg = ideal @ _discount(ideal.shape[1])
        denominator = sum(1 for j in data.qrels.values() if j)
        return cls(pos, gather(mats, pos), gains, id_rank, idcg, evaluable, denominator, k)

    def per_query(
        self,
        fusion: str,
        weights: Mapping[str, float],
        rrf_k: int = RRF_K,
        row_weights: Sequence[Mapping[str, float]] | None = None,
    ) -> np.ndarray:
        """(Q,) nDCG@k of each query under one fusion (0 for a query the qrels do not judge)."""
        fused = fuse_rows(self.scores, self.pos, fusion, weights, rrf_k, row_weights)
        s = np.where(self.pos >= 0, np.nan_to_num(np.asarray(fused, np.float64), nan=-np.inf), -np.inf)
        top = np.argsort(-s, axis=1, kind="stable")[:, : self.k]  # (Q, k') as fusion.top_rows
        val = np.take_along_axis(s, top, 1).astype(np.float32).astype(np.float64)
        rank = np.take_along_axis(self.id_rank, top, 1)
        # trec_eval order of the kept documents: score descending, ties by doc id descending
        order = np.lexsort((-rank, -val), axis=1)
        val = np.take_along_axis(val, order, 1)
        g = np.take_along_axis(np.take_along_axis(self.gains, top, 1), order, 1)
        g = np.where(np.isfinite(val), np.clip(g, 0, None), 0.0)
        width = int(np.isfinite(val).sum(1).max(initial=0))  # metrics.rank_run's longest list
        g = g[:, :width]
        dcg = g @ _discount(width)
        out = np.zeros(len(dcg), np.float64)
        np.divide(dcg, self.idcg, out=out, where=(self.idcg > 0) & self.evaluable)
        return out

    def mean(
        self,
        fusion: str,
        weights: Mapping[str, float],
        rrf_k: int = RRF_K,
        row_weights: Sequence[Mapping[str, float]] | None = None,
    ) -> float:
        """The set's nDCG@k as ``metrics.evaluate`` gives it (mean over the judged queries)."""
        return self.mean_of(self.per_query(fusion, weights, rrf_k, row_weights))

    def mean_of(self, per_query: np.ndarray) -> float:
        """The set's mean of ``per_query`` values (from :meth:`per_query`) as ``metrics.evaluate``
        takes it: summed over the judged queries, in order (the same float), / ``denominator``."""
        total = np.asarray(per_query)[self.evaluable].sum()
        return float(total / self.denominator) if self.denominator else 0.0
