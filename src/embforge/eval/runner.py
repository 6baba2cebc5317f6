"""Evaluate an encoder: retrieval per head + hybrid + Matryoshka curve + BM25, STS, bitext.

Retrieval is exact (brute force) by default: queries are encoded once with every head; the corpus
is encoded in chunks, each chunk is scored against all queries per head (``embforge.scoring``),
the BGE-M3 hybrid score ``w1*dense + w2*sparse + w3*multivector`` (Chen et al., 2024) is
formed on the same chunk, and a running top-k per head keeps memory at O(Q * k) whatever
the corpus size. The Matryoshka curve (Kusupati et al., 2022) truncates the dense vectors.

With ``rerank_top=N`` retrieval goes through the retrieval path instead, as the BGE-M3
paper evaluates its re-ranking: the union of the top-N dense and top-N sparse documents
of each query (``HybridIndex.candidate_rows``) is re-ranked by every head and by the
hybrid (``HybridIndex.score_rows``, one batched scorer call per head); the exact mode
stays the reference for small sets. The report's ``mode`` says which ran.

The encoder is anything with ``encode(texts, role=..., heads=..., batch_size=...,
max_length=...) -> embforge.types.Embeddings`` (``embforge.model.encoder.Encoder``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

from embforge.errors import ConfigError
from embforge.eval import metrics as M
from embforge.eval.datasets import BitextSet, RetrievalSet, StsSet
from embforge.eval.fusion import (
    HYBRID_BM25,
    HYBRID_BM25_FUSION,
    candidate_matrix,
    fuse_rows,
    gather,
    top_rows,
)
from embforge.index.bm25 import BM25Index, bm25_weights, counts_from_ids
from embforge.index.dense import ExactDenseIndex
from embforge.index.hybrid import HybridIndex
from embforge.index.multivector import MultiVectorIndex
from embforge.index.sparse import SparseIndex
from embforge.model.fusion import ModelFusion
from embforge.model.heads import head_scores
from embforge.scoring import (
    DEFAULT_WEIGHTS,
    dense_scores,
    fuse_rows_by_weights,
    parse_weights,
    truncate_dense,
    weighted_parts,
)
from embforge.types import Embeddings

__all__ = [
    "TopK",
    "evaluate_retrieval",
    "evaluate_sts",
    "evaluate_bitext",
    "bm25_run",
    "bm25_matrix",
    "default_mrl_dims",
    "evaluate_all",
    "evaluate_index",
]

K_VALUES = (1, 3, 5, 10, 20, 100)


class TopK:
    """Running top-k (per query) over column chunks of a (Q, N) score matrix."""

    def __init__(self, n_queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n_queries, 0), -np.inf, dtype=np.float32)
        self.index = np.zeros((n_queries, 0), dtype=np.int64)

    def add(self, scores: np.ndarray, offset: int) -> None:
        """Merge a (Q, n) chunk whose first column is corpus position ``offset``."""
        s = np.concatenate([self.scores, scores.astype(np.float32)], 1)
        idx = np.concatenate(
            [self.index, np.broadcast_to(np.arange(offset, offset + scores.shape[1]), scores.shape)], 1
        )
        if s.shape[1] > self.k:
            keep = np.argpartition(-s, self.k - 1, axis=1)[:, : self.k]
            s, idx = np.take_along_axis(s, keep, 1), np.take_along_axis(idx, keep, 1)
        self.scores, self.index = s, idx

    def run(self, query_ids: Sequence[str], doc_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        return {
            q: {doc_ids[j]: float(v) for j, v in zip(self.index[i], self.scores[i])}
            for i, q in enumerate(query_ids)
        }


def default_mrl_dims(full: int) -> list[int]:
    """Powers of two from 32 below ``full``, plus ``full`` (e.g. 384 -> 32, 64, 128, 256, 384)."""
    dims = [d for d in (32, 64, 128, 256, 512, 768, 1024, 2048) if d < full]
    return dims + [full]


def _token_ids(tokenize: Callable[[str], list[str]], data: RetrievalSet) -> tuple[list, list, int]:
    """(document token ids, query token ids, vocabulary size) under one shared vocabulary."""
    vocab: dict[str, int] = {}

    def ids(texts: Sequence[str]) -> list[list[int]]:
        return [[vocab.setdefault(t, len(vocab)) for t in tokenize(x)] for x in texts]

    docs, queries = ids(data.doc_texts), ids(data.query_texts)
    return docs, queries, max(len(vocab), 1)


def bm25_run(tokenize: Callable[[str], list[str]], data: RetrievalSet, k: int) -> dict[str, dict[str, float]]:
    """BM25 (Robertson and Zaragoza, 2009; Lucene variant, k1=1.5, b=0.75) on the model's own
    tokenizer, as the BGE-M3 paper's baseline, through :class:`embforge.index.BM25Index`.

    Args:
        tokenize: text -> list of token strings (e.g. ``encoder.tokenizer.tokenize``).

    Returns:
        The top-``k`` run ``{query_id: {doc_id: score}}``.
    """
    docs, queries, v = _token_ids(tokenize, data)
    index = BM25Index(backend="numpy", n_threads=1)
    index.add(list(data.doc_ids), counts_from_ids(docs, v))
    hits = index.search(counts_from_ids(queries, v), k=min(k, len(data.doc_ids)))
    return hits.to_run(list(data.query_ids))


def bm25_matrix(tokenize: Callable[[str], list[str]], data: RetrievalSet) -> np.ndarray:
    """(Q, D) BM25 scores of every query against every document, the same Lucene BM25 as
    :func:`bm25_run` (``bm25_weights``: document term weights, summed over the query's tokens)."""
    docs, queries, v = _token_ids(tokenize, data)
    w, q = bm25_weights(counts_from_ids(docs, v)), counts_from_ids(queries, v)
    wd = sp.csr_matrix((w.values, w.indices, w.indptr), shape=(len(docs), v))
    qm = sp.csr_matrix((q.values, q.indices, q.indptr), shape=(len(queries), v))
    return np.asarray((qm @ wd.T).toarray(), np.float32)


def _encode(encoder, texts, role, heads, batch_size, max_length, dtype: str = "fp32") -> Embeddings:
    kw = {} if dtype == "fp32" else {"dtype": dtype}  # encoders without a dtype option still work at fp32
    return encoder.encode(
        list(texts), role=role, heads=tuple(heads), batch_size=batch_size, max_length=max_length, **kw
    )


def _encode_dense(encoder, texts, batch_size, max_length) -> np.ndarray:
    dense = _encode(encoder, texts, "query", ("dense",), batch_size, max_length).dense
    if dense is None:
        raise ValueError(f"{type(encoder).__name__}.encode(heads=('dense',)) returned no dense embeddings")
    return dense


@dataclass
class _RetrievalRuns:
    """Running top-k per head, for the hybrid and per Matryoshka dim, over corpus chunks.

    Exact mode scores every chunk against the queries; a weighted hybrid is a running top-k
    over the whole corpus. A hybrid that ranks candidates (min-max / z-score / RRF, or
    ``hybrid+bm25``) keeps every head's chunk scores (``mats``) and is ranked at the end by
    the same candidate path as rerank mode (``_candidates`` + ``embforge.eval.fusion``).
    """

    heads: tuple[str, ...]
    fusion: ModelFusion
    queries: Embeddings
    tops: dict[str, TopK]
    mrl_tops: dict[int, TopK]
    q_trunc: dict[int, np.ndarray] = field(default_factory=dict)
    pos_vecs: dict[str, np.ndarray] = field(default_factory=dict)
    index: HybridIndex | None = None  # rerank mode: the corpus is indexed, scored at the end
    mats: dict[str, list[np.ndarray]] | None = None  # exact mode, candidate-ranked hybrids
    row_weights: list[dict[str, float]] | None = None  # per-query hybrid weights (coverage split)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.fusion.weights)

    def add_chunk(self, de: Embeddings, start: int) -> None:
        """Score one encoded corpus chunk (its first document is corpus position ``start``)."""
        if self.index is not None:
            self.index.add([str(start + j) for j in range(len(de))], de)
        else:
            sc = {h: head_scores(self.queries, de, h) for h in self.heads}  # head -> (Q, n), any head
            for h, s in sc.items():
                self.tops[h].add(s, start)
            if "hybrid" in self.tops and self.fusion.fusion == "weighted":
                fused = (
                    weighted_parts(sc, self.weights)
                    if self.row_weights is None
                    else fuse_rows_by_weights(sc, "weighted", self.row_weights)
                )
                self.tops["hybrid"].add(fused, start)
            if self.mats is not None:
                for h, s in sc.items():
                    self.mats.setdefault(h, []).append(np.asarray(s, np.float32))
        if not self.mrl_tops:
            return
        if de.dense is None:
            raise ValueError("Matryoshka dims are scored on the dense head; encode the corpus with it")
        for dim, top in self.mrl_tops.items():
            top.add(self.q_trunc[dim] @ truncate_dense(de.dense, dim).T, start)


def _rerank_index(heads: tuple[str, ...], n: int) -> HybridIndex:
    """The per-head indexes of rerank mode (dense and sparse retrieve, every head re-ranks)."""
    known = {"dense": ExactDenseIndex, "sparse": SparseIndex, "multivector": MultiVectorIndex}
    bad = [h for h in heads if h not in known]
    if bad or not {"dense", "sparse"} & set(heads):
        raise ConfigError(
            f"rerank_top needs the dense and/or sparse head to retrieve candidates and only the heads "
            f"{', '.join(known)} (got {', '.join(heads)}); drop --rerank-top for exact evaluation"
        )
    return HybridIndex(**{h: known[h]() for h in heads}, retrieve=("dense", "sparse"), candidates=n)


#: Candidates per retrieving head for a candidate-ranked hybrid in exact mode (as ``HybridIndex``).
EXACT_CANDIDATES = 100


def _candidates(runs: _RetrievalRuns) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(Q, C) corpus positions (-1 padded) and every head's exact scores on them: the index's
    dense + sparse candidate union in rerank mode, the same union from the kept scores in exact mode."""
    if runs.index is not None:
        rows = runs.index.candidate_rows(runs.queries, runs.index.candidates)
        scores = runs.index.score_rows(runs.queries, rows)
        docs = np.asarray(runs.index.idmap.ids, np.int64)  # ids are corpus positions
        return np.where(rows >= 0, docs[np.maximum(rows, 0)], -1), scores
    mats = {h: np.concatenate(v, axis=1) for h, v in (runs.mats or {}).items()}
    pos = candidate_matrix(mats, EXACT_CANDIDATES)
    return pos, gather(mats, pos)


def _set_top(top: TopK, scores: np.ndarray, pos: np.ndarray) -> None:
    top.scores, top.index = top_rows(scores, pos, top.k)


def _rank_candidates(runs: _RetrievalRuns, bm25_scores: np.ndarray | None) -> dict[str, TopK]:
    """The one candidate path of both modes: rerank mode ranks every head on the candidates; the
    hybrid (unless an exact weighted sum) and ``hybrid+bm25`` fuse the candidates' scores."""
    pos, scores = _candidates(runs)
    nq = len(runs.queries)
    if runs.index is not None:
        for h in runs.heads:
            _set_top(runs.tops[h], scores[h], pos)
    mf = runs.fusion
    if "hybrid" in runs.tops and (runs.index is not None or mf.fusion != "weighted"):
        fused = fuse_rows(scores, pos, mf.fusion, mf.weights, mf.rrf_k, runs.row_weights)
        _set_top(runs.tops["hybrid"], fused, pos)
    extra: dict[str, TopK] = {}
    if bm25_scores is not None:
        four = {**scores, "bm25": gather({"bm25": bm25_scores}, pos)["bm25"]}
        extra["hybrid+bm25"] = TopK(nq, runs.tops["hybrid"].k)
        _set_top(extra["hybrid+bm25"], fuse_rows(four, pos, HYBRID_BM25_FUSION, HYBRID_BM25), pos)
    return extra


def _start_runs(
    qe: Embeddings,
    heads: tuple[str, ...],
    fusion: ModelFusion,
    hybrid: bool,
    mrl_dims: Sequence[int] | None,
    k: int,
    rerank_top: int | None = None,
    row_weights: list[dict[str, float]] | None = None,
) -> _RetrievalRuns:
    nq = len(qe)
    full_dim = qe.dense.shape[1] if qe.dense is not None else 0
    if mrl_dims is None and full_dim:
        mrl_dims = default_mrl_dims(full_dim)
    dims = [int(x) for x in (mrl_dims or []) if "dense" in heads and int(x) <= full_dim]
    tops = {h: TopK(nq, k) for h in heads}
    if hybrid and len(heads) > 1:
        tops["hybrid"] = TopK(nq, k)
    runs = _RetrievalRuns(heads, fusion, qe, tops, {dim: TopK(nq, k) for dim in dims}, row_weights=row_weights)
    if qe.dense is not None:  # dims is empty without a dense head
        runs.q_trunc = {dim: truncate_dense(qe.dense, dim) for dim in dims}
    if rerank_top:
        runs.index = _rerank_index(heads, max(int(rerank_top), k))
    return runs


def hybrid_fusion(encoder: Any, weights: Mapping[str, float] | ModelFusion | None) -> ModelFusion:
    """The hybrid's fusion: ``weights`` if a ``ModelFusion``; else the encoder's ``fusion.json``
    with ``weights`` (a mapping) on top; else the paper's weighted sum with ``weights``."""
    if isinstance(weights, ModelFusion):
        return weights
    if weights is not None:
        weights = cast(dict[str, float], parse_weights(weights))
    own = getattr(encoder, "fusion", None)
    if isinstance(own, ModelFusion):
        if weights is None:
            return own  # with its coverage split, if it has one
        r = own.resolve(None, weights)
        return ModelFusion(r["fusion"], r["weights"], own.rrf_k)
    return ModelFusion("weighted", dict(DEFAULT_WEIGHTS if weights is None else weights))


#: Largest Q x D x heads score matrix kept for a candidate-ranked hybrid in exact evaluation (1.6 GB).
MAX_FUSION_SCORES = 400_000_000


def _check_fusion_size(keep: bool, nq: int, nd: int, nh: int) -> None:
    if keep and nq * nd * nh > MAX_FUSION_SCORES:
        raise ConfigError(
            f"a normalised / RRF / hybrid+bm25 hybrid keeps every head's scores in exact evaluation: "
            f"{nq} queries x {nd} documents x {nh} heads exceeds {MAX_FUSION_SCORES}; add --rerank-top 100 "
            "(candidates, as the hybrid index ranks), or use --fusion weighted without --hybrid-bm25"
        )


def _check_scores_out(scores_out: dict | None, rerank_top: int | None, size: int) -> None:
    if scores_out is None:
        return
    if rerank_top is not None:
        raise ConfigError(
            "scores_out keeps exact (Q, D) score matrices: it cannot be combined with rerank_top"
        )
    if size > MAX_FUSION_SCORES:
        raise ConfigError(
            f"scores_out would keep {size} scores (queries x documents x heads), above {MAX_FUSION_SCORES}; "
            "evaluate a sample of the set (fewer queries or documents), or leave scores_out unset"
        )


def evaluate_retrieval(  # noqa: PLR0913 - keyword-only options, one per `embforge eval` flag
    encoder,
    data: RetrievalSet,
    *,
    heads: Sequence[str] = ("dense", "sparse", "multivector"),
    hybrid: bool = True,
    weights: Mapping[str, float] | ModelFusion | None = None,
    mrl_dims: Sequence[int] | None = (),
    bm25: bool = True,
    k_values: Sequence[int] = K_VALUES,
    batch_size: int = 32,
    chunk_size: int = 2048,
    max_length: int | None = None,
    health: bool = True,
    rerank_top: int | None = None,
    hybrid_bm25: bool = False,
    dtype: str = "fp32",
    scores_out: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Evaluate every head, the hybrid, the Matryoshka dims and BM25 on one retrieval set.

    Args:
        weights: hybrid weights per head (:func:`embforge.scoring.parse_weights`: a head left out
            weighs 0), or a ``ModelFusion`` (fusion rule + weights); None = the
            encoder's ``fusion.json`` (``Encoder.fusion``), else the weighted sum with
            ``embforge.scoring.DEFAULT_WEIGHTS``. In exact mode a weighted hybrid ranks the whole
            corpus; the other rules rank the dense + sparse top-100 candidates, as the hybrid index does.
        mrl_dims: dense dims for the Matryoshka curve; ``None`` = :func:`default_mrl_dims`,
            ``()`` = no curve.
        rerank_top: None = exact evaluation (every head against the whole corpus); N = every
            head and the hybrid re-rank the union of the top-N dense and top-N sparse documents.
        dtype: encode precision ("fp32", "bf16", "fp16", "auto"), reported as ``encode_dtype``.
        hybrid_bm25: also report ``hybrid+bm25``: z-scores of the heads (1, 0.3, 1) + 0.3 z(BM25)
            on the same candidates (``embforge.eval.fusion.HYBRID_BM25``); needs the three heads.
        scores_out: a dict this fills with every head's exact (Q, D) float32 score matrix, the
            very scores the heads were ranked by (exact mode only): with the default
            ``chunk_size``, the same floats ``embforge.eval.tune.score_matrices`` computes, without
            encoding the set again.

    Returns:
        The report entry ``{"language", "num_queries", "num_docs", "heads": {head: metrics},
        "hybrid_fusion", "mode", "mrl": {dim: ndcg@10}, "health": {...}, "seconds": ...}``.
    """
    t0 = time.perf_counter()
    heads = tuple(heads)
    mf = hybrid_fusion(encoder, weights)
    k = max(k_values)
    hybrid = hybrid and len(heads) > 1
    bm25_fused = _wants_hybrid_bm25(hybrid_bm25, hybrid, heads, encoder)
    keep = rerank_top is None and hybrid and (mf.fusion != "weighted" or bm25_fused)
    _check_fusion_size(keep, len(data.query_ids), len(data.doc_ids), len(heads))
    _check_scores_out(scores_out, rerank_top, len(data.query_ids) * len(data.doc_ids) * len(heads))
    qe = _encode(encoder, data.query_texts, "query", heads, batch_size, max_length, dtype)
    runs = _start_runs(qe, heads, mf, hybrid, mrl_dims, k, rerank_top, _row_weights(mf, hybrid, encoder, data))
    runs.mats = {} if keep or scores_out is not None else None
    _score_corpus(runs, encoder, data, chunk_size, health, (batch_size, max_length, dtype))
    if scores_out is not None:
        scores_out.update({h: np.concatenate(v, axis=1) for h, v in (runs.mats or {}).items()})
    extra: dict[str, TopK] = {}
    if runs.index is not None or keep:
        bm = bm25_matrix(encoder.tokenizer.tokenize, data) if bm25_fused else None
        extra = _rank_candidates(runs, bm)
    res = _retrieval_report(runs, data, k_values)
    for name, top in extra.items():
        res["heads"][name] = M.evaluate(data.qrels, top.run(data.query_ids, data.doc_ids), k_values)
    res["mode"], res["encode_dtype"] = (
        "exact" if runs.index is None else f"rerank-top {runs.index.candidates} (dense + sparse candidates)"
    ), dtype
    if bm25 and hasattr(encoder, "tokenizer"):
        res["heads"]["bm25"] = M.evaluate(data.qrels, bm25_run(encoder.tokenizer.tokenize, data, k), k_values)
    if runs.mrl_tops:
        res["mrl"] = {
            str(dim): M.evaluate(data.qrels, t.run(data.query_ids, data.doc_ids), (10,))["ndcg@10"]
            for dim, t in runs.mrl_tops.items()
        }
    if health and qe.dense is not None and runs.pos_vecs:
        res["health"] = _health(qe.dense, data, runs.pos_vecs)
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def _score_corpus(
    runs: _RetrievalRuns,
    encoder: Any,
    data: RetrievalSet,
    chunk_size: int,
    health: bool,
    encode_opts: tuple[int, int | None, str],
) -> None:
    """Encode the corpus in chunks of ``chunk_size`` and score each against the queries
    (``runs.add_chunk``); with ``health``, keep the judged-relevant documents' dense vectors.
    ``encode_opts``: (batch_size, max_length, dtype)."""
    batch_size, max_length, dtype = encode_opts
    pos_docs = {d for rel in data.qrels.values() for d, r in rel.items() if r > 0}
    for start in range(0, len(data.doc_texts), chunk_size):
        texts = data.doc_texts[start : start + chunk_size]
        de = _encode(encoder, texts, "document", runs.heads, batch_size, max_length, dtype)
        runs.add_chunk(de, start)
        if health and de.dense is not None:
            for j, did in enumerate(data.doc_ids[start : start + chunk_size]):
                if did in pos_docs:
                    runs.pos_vecs[did] = de.dense[j]


def _row_weights(mf: ModelFusion, hybrid: bool, encoder: Any, data: RetrievalSet) -> list[dict[str, float]] | None:
    """Per-query hybrid weights when the fusion has a coverage split (``ModelFusion.query_weights``)."""
    if not hybrid or mf.low_coverage is None or not hasattr(encoder, "tokenizer"):
        return None
    return mf.query_weights(data.query_texts, encoder.tokenizer)


def _wants_hybrid_bm25(asked: bool, hybrid: bool, heads: tuple[str, ...], encoder: Any) -> bool:
    if not asked:
        return False
    if not hybrid or not hasattr(encoder, "tokenizer"):
        raise ConfigError(
            "hybrid+bm25 fuses the model's heads with BM25 on its tokenizer: it needs the hybrid "
            "(--hybrid, two or more heads) and a model with a tokenizer"
        )
    return True


def _retrieval_report(runs: _RetrievalRuns, data: RetrievalSet, k_values: Sequence[int]) -> dict[str, Any]:
    """The report entry's header and per-head metrics (hybrid included)."""
    out = {
        "language": data.language,
        "language_source": data.meta.get("language_source", ""),  # given | data | name
        "num_queries": len(data.query_ids),
        "num_docs": len(data.doc_ids),
        "heads": {
            h: M.evaluate(data.qrels, top.run(data.query_ids, data.doc_ids), k_values)
            for h, top in runs.tops.items()
        },
        "hybrid_weights": {h: runs.weights.get(h, 0.0) for h in runs.heads} if "hybrid" in runs.tops else {},
    }
    if "hybrid" in runs.tops:
        out["hybrid_fusion"] = runs.fusion.fusion
    split = runs.fusion.low_coverage
    if "hybrid" in runs.tops and split is not None and runs.row_weights is not None:
        low = sum(w == dict(split.weights) for w in runs.row_weights)
        out["hybrid_low_coverage"] = {**split.to_dict(), "num_queries": int(low)}
    return out


def _health(
    qdense: np.ndarray, data: RetrievalSet, pos_vecs: dict[str, np.ndarray]
) -> dict[str, float | None]:
    a, b = [], []
    for i, q in enumerate(data.query_ids):
        for d, r in data.qrels[q].items():
            if r > 0 and d in pos_vecs:
                a.append(qdense[i])
                b.append(pos_vecs[d])
                break
    docs = np.stack(list(pos_vecs.values()))
    # uniformity compares pairs of documents: with one judged document there is none (reported n/a)
    uniformity = M.uniformity(docs) if len(docs) >= 2 else None
    return {"alignment": M.alignment(np.stack(a), np.stack(b)), "uniformity": uniformity}


def evaluate_sts(
    encoder, data: StsSet, *, batch_size: int = 64, max_length: int | None = None
) -> dict[str, Any]:
    """Spearman / Pearson of the dense cosine vs the gold scores."""
    e1 = _encode_dense(encoder, data.sentences1, batch_size, max_length)
    e2 = _encode_dense(encoder, data.sentences2, batch_size, max_length)
    out: dict[str, Any] = {"language": data.language}
    out.update(M.sts_correlations(e1, e2, np.asarray(data.scores)))
    both = np.concatenate([e1, e2])
    out["uniformity"] = M.uniformity(both)
    return out


def evaluate_bitext(
    encoder, data: BitextSet, *, batch_size: int = 64, max_length: int | None = None
) -> dict[str, Any]:
    """Bitext mining accuracy@1 (source -> target and back) with the dense head."""
    s = _encode_dense(encoder, data.source, batch_size, max_length)
    t = _encode_dense(encoder, data.target, batch_size, max_length)
    sim = dense_scores(s, t)  # (N, N)
    return {
        "language": data.language,
        "accuracy@1": M.accuracy_at_1(sim),
        "accuracy@1_reverse": M.accuracy_at_1(sim.T),
        "num_pairs": len(data.source),
    }


def evaluate_all(
    encoder,
    retrieval: Sequence[RetrievalSet] = (),
    sts: Sequence[StsSet] = (),
    bitext: Sequence[BitextSet] = (),
    *,
    log=None,
    on_scores: Callable[[RetrievalSet, dict[str, np.ndarray]], None] | None = None,
    **retrieval_options: Any,
) -> dict[str, Any]:
    """One report *run*: every retrieval set (all heads, hybrid, MRL, BM25), STS and bitext set.

    ``log`` is an optional ``print``-like callable for progress lines. ``on_scores(data, mats)``,
    if given, receives each retrieval set's exact ``{head: (Q, D) float32}`` score matrices
    (``evaluate_retrieval``'s ``scores_out``), e.g. to tune the fusion later without re-encoding.
    """
    run: dict[str, Any] = {"retrieval": {}, "sts": {}, "bitext": {}, "health": {}}
    bs = retrieval_options.get("batch_size", 32)
    ml = retrieval_options.get("max_length")
    for data in retrieval:
        mats: dict[str, np.ndarray] | None = {} if on_scores is not None else None
        res = evaluate_retrieval(encoder, data, scores_out=mats, **retrieval_options)
        if on_scores is not None and mats is not None:
            on_scores(data, mats)
        health = res.pop("health", None)
        if health:
            run["health"][data.name] = health
        run["retrieval"][data.name] = res
        if log:
            best = ", ".join(f"{h} {m['ndcg@10']:.3f}" for h, m in res["heads"].items())
            log(f"  {data.name}: nDCG@10 {best} ({res['seconds']:.0f}s)")
    for sts_set in sts:
        run["sts"][sts_set.name] = evaluate_sts(encoder, sts_set, batch_size=bs, max_length=ml)
        if log:
            log(f"  {sts_set.name}: Spearman {run['sts'][sts_set.name]['spearman']:.4f}")
    for pairs in bitext:
        run["bitext"][pairs.name] = evaluate_bitext(encoder, pairs, batch_size=bs, max_length=ml)
        if log:
            log(f"  {pairs.name}: accuracy@1 {run['bitext'][pairs.name]['accuracy@1']:.4f}")
    return {k: v for k, v in run.items() if v}


def evaluate_index(
    retriever, data: RetrievalSet, *, k_values: Sequence[int] = K_VALUES, batch_size: int = 64
) -> dict[str, Any]:
    """Evaluate a saved index (``embforge.search.retriever.Retriever``) on a retrieval set.

    The index's own search (ANN settings, fusion, candidates) produces the run, so this
    measures what a deployment of that index returns.
    """
    t0 = time.perf_counter()
    hits = retriever.search(list(data.query_texts), k=max(k_values), encode_kwargs={"batch_size": batch_size})
    missing = sorted({d for ids in hits.ids for d in ids} - set(data.doc_ids))
    res = M.evaluate(data.qrels, hits.to_run(data.query_ids), k_values)
    return {
        "language": data.language,
        "language_source": data.meta.get("language_source", ""),  # given | data | name
        "num_queries": len(data.query_ids),
        "num_docs": len(data.doc_ids),
        "heads": {"index": res},
        "ids_not_in_corpus": len(missing),
        "seconds": round(time.perf_counter() - t0, 2),
    }
