"""Hard-negative mining with false-negative filtering (TopK-PercPos, NV-Retriever).

For each query: the teacher ranks the corpus (inner product in a faiss index: exact
``IndexFlatIP`` by default, HNSW for large corpora),
positives are removed, likely false negatives are dropped, and ``n_negatives`` are
sampled from what is left:

* **TopK-PercPos** (NV-Retriever; Arctic-Embed 2.0): drop a candidate whose teacher score
  exceeds ``perc_pos`` times the positive's score (``score > p * s_pos``; for a negative
  ``s_pos`` the threshold is ``s_pos - (1 - p) * |s_pos|`` so it stays below the positive).
  With several positives the lowest positive score is used (the stricter threshold).
* **absolute margin**: drop a candidate with ``score > s_pos - margin``.
* **sampling**: ``"top"`` keeps the highest-ranked survivors; ``"range"`` draws uniformly
  among survivors ranked in ``[lo, hi)`` (ANCE-style, ranks counted among the retrieved
  non-positive candidates, 0-based), with a per-query seeded generator.

Memory: the corpus (texts + one float32 vector each) is held in memory (a corpus given as the
shards of a sharded encode is searched from disk instead: ``embforge.data.shard_mining``); queries and
output stream in chunks of ``query_batch``, so memory does not grow with the number of
queries. Output records are :class:`~embforge.data.formats.Example` with teacher scores.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from embforge.data.formats import Example
from embforge.data.io import (
    BadLines,
    atomic_write,
    check_output,
    count_rows,
    iter_rows,
    read_corpus,
    read_qrels,
    read_queries,
    read_records,
)
from embforge.data.shard_mining import ShardCorpusIndex
from embforge.data.shards import is_shard_dir
from embforge.data.teachers import Teacher
from embforge.errors import ConfigError, DataError
from embforge.index.ann import new_flat_ip, new_hnsw_ip

__all__ = [
    "SAMPLINGS",
    "INDEX_KINDS",
    "MiningConfig",
    "MiningQuery",
    "MiningStats",
    "CorpusIndex",
    "false_negative_threshold",
    "select_negatives",
    "mine",
    "queries_from_records",
    "queries_from_beir",
    "mine_file",
]

SAMPLINGS = ("top", "range")
INDEX_KINDS = ("flat", "hnsw")


@dataclass(frozen=True)
class MiningConfig:
    """Mining parameters (see the module docstring).

    Attributes:
        top_k: candidates retrieved per query (after removing positives).
        n_negatives: negatives written per query (fewer if not enough survive; counted).
        perc_pos: TopK-PercPos factor p; None turns it off.
        margin: absolute margin; None turns it off.
        sampling: "top" or "range".
        rank_range: ``(lo, hi)`` rank window for "range".
        seed: seed of the "range" sampling.
        query_batch: queries per chunk (memory is bounded by it, not by the query count).
        corpus_batch: texts per teacher call while indexing the corpus.
        index: "flat" (exact) or "hnsw" (approximate, for large corpora).
        ef_search: HNSW search breadth.
    """

    top_k: int = 100
    n_negatives: int = 7
    perc_pos: float | None = 0.95
    margin: float | None = None
    sampling: str = "top"
    rank_range: tuple[int, int] = (10, 100)
    seed: int = 0
    query_batch: int = 512
    corpus_batch: int = 4096
    index: str = "flat"
    ef_search: int = 256

    def __post_init__(self) -> None:
        errors = []
        if self.top_k < 1:
            errors.append(f"top_k={self.top_k} must be >= 1")
        if self.n_negatives < 1:
            errors.append(f"n_negatives={self.n_negatives} must be >= 1")
        if self.perc_pos is not None and not 0.0 < self.perc_pos <= 1.0:
            errors.append(f"perc_pos={self.perc_pos} must be in (0, 1] (NV-Retriever uses 0.95), or None")
        if self.margin is not None and not 0 <= self.margin < float("inf"):  # NaN fails too
            errors.append(f"margin={self.margin} must be >= 0, or None")
        if self.sampling not in SAMPLINGS:
            errors.append(f"unknown sampling {self.sampling!r}; choose from: {', '.join(SAMPLINGS)}")
        lo, hi = self.rank_range
        if self.sampling == "range" and not 0 <= lo < hi <= self.top_k:
            errors.append(f"rank_range={self.rank_range} must satisfy 0 <= lo < hi <= top_k ({self.top_k})")
        if self.index not in INDEX_KINDS:
            errors.append(f"unknown index {self.index!r}; choose from: {', '.join(INDEX_KINDS)}")
        if self.query_batch < 1 or self.corpus_batch < 1:
            errors.append("query_batch and corpus_batch must be >= 1")
        if errors:
            raise ConfigError("invalid mining settings: " + "; ".join(errors))


@dataclass(frozen=True)
class MiningQuery:
    """A query to mine for: its text, its positive texts and metadata copied to the output."""

    query: str
    positives: tuple[str, ...]
    id: str = ""
    source: str = ""
    lang: str = ""


@dataclass
class MiningStats:
    """Counts over a mining run (the CLI prints :meth:`summary`)."""

    queries: int = 0
    candidates: int = 0
    dropped_positive: int = 0
    dropped_false_negative: int = 0
    dropped_margin: int = 0
    negatives: int = 0
    short_queries: int = 0
    queries_without_negatives: int = 0
    skipped_without_positive: int = 0

    def summary(self) -> str:
        pct = 100.0 * self.dropped_false_negative / max(self.candidates, 1)
        return (
            f"mined {self.queries} queries: {self.candidates} candidates, "
            f"{self.dropped_positive} positives removed, "
            f"{self.dropped_false_negative} dropped as likely false negatives (TopK-PercPos, {pct:.1f}%), "
            f"{self.dropped_margin} dropped by the margin, {self.negatives} negatives written; "
            f"{self.short_queries} queries got fewer negatives than asked "
            f"({self.queries_without_negatives} got none)"
            + (
                f"; {self.skipped_without_positive} BEIR queries skipped: no relevant document in the qrels"
                if self.skipped_without_positive
                else ""
            )
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class CorpusIndex:
    """Unique corpus texts and their teacher vectors in a faiss inner-product index.

    Args:
        texts: corpus texts (streamed; duplicates are kept once).
        teacher: embeds them with role "document", ``batch`` texts per call.
        kind: ``"flat"`` (exact ``IndexFlatIP``, default) or ``"hnsw"`` (``IndexHNSWFlat``,
            approximate, for corpora where exact search per query is too slow).
        hnsw_m, ef_search: HNSW graph degree and search breadth (recall grows with ef_search).
    """

    def __init__(
        self,
        texts: Iterable[str],
        teacher: Teacher,
        batch: int = 4096,
        progress: bool = False,
        kind: str = "flat",
        hnsw_m: int = 32,
        ef_search: int = 256,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ConfigError(f"unknown mining index {kind!r}; choose from: {', '.join(INDEX_KINDS)}")
        self.kind, self.hnsw_m, self.ef_search = kind, hnsw_m, ef_search
        self.texts: list[str] = []
        self.pos: dict[str, int] = {}
        self.index: Any = None  # a faiss index (faiss ships no type stubs); set below, never None after
        bar = tqdm(desc="embed corpus", unit="doc", disable=not progress, file=sys.stderr)
        it = iter(texts)
        while batch_texts := list(islice(it, batch)):
            chunk = [t for t in dict.fromkeys(batch_texts) if t not in self.pos]
            if not chunk:  # every text of this batch was seen before
                continue
            for t in chunk:
                self.pos[t] = len(self.texts)
                self.texts.append(t)
            emb = np.ascontiguousarray(teacher.embed(chunk, "document"), dtype=np.float32)
            if self.index is None:
                self.index = self._new_index(emb.shape[1])
            self.index.add(emb)
            bar.update(len(chunk))
        bar.close()
        if self.index is None:
            raise DataError("the mining corpus is empty; give a corpus with at least one text")

    def _new_index(self, dim: int):
        if self.kind == "flat":
            return new_flat_ip(dim)
        return new_hnsw_ip(dim, self.hnsw_m, max(2 * self.hnsw_m, 200), self.ef_search)

    def __len__(self) -> int:
        return len(self.texts)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> scores (Q, k) and corpus positions (Q, k), -1 where fewer than k."""
        k = min(k, len(self))
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.ef_search, k)
        return self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)

    def vectors(self, positions: list[int]) -> np.ndarray:
        return self.index.reconstruct_batch(np.asarray(positions, dtype=np.int64))

    def texts_of(self, rows: np.ndarray) -> list[list[str]]:
        """The texts of (Q, k) corpus positions (-1 skipped)."""
        return [[self.texts[j] for j in row if j >= 0] for row in rows]


def false_negative_threshold(pos_score: float, perc_pos: float) -> float:
    """Scores above this are likely false negatives: ``p * s_pos`` for ``s_pos >= 0``.

    Example:
        >>> round(false_negative_threshold(0.8, 0.95), 4), round(false_negative_threshold(-0.5, 0.9), 4)
        (0.76, -0.55)
    """
    return pos_score - (1.0 - perc_pos) * abs(pos_score)


def select_negatives(
    cand_texts: list[str],
    cand_scores: np.ndarray,
    positives: set[str],
    pos_score: float,
    cfg: MiningConfig,
    rng: np.random.Generator | None,
    stats: MiningStats,
) -> tuple[list[str], list[float]]:
    """Filter and sample one query's candidates (given best first)."""
    ranked: list[tuple[int, str, float]] = []  # (rank among non-positive candidates, text, score)
    for text, score in zip(cand_texts, cand_scores):
        if text in positives:
            stats.dropped_positive += 1
            continue
        if len(ranked) >= cfg.top_k:
            break
        ranked.append((len(ranked), text, float(score)))
    stats.candidates += len(ranked)
    fn_thr = None if cfg.perc_pos is None else false_negative_threshold(pos_score, cfg.perc_pos)
    survivors = []
    for rank, text, score in ranked:
        if fn_thr is not None and score > fn_thr:
            stats.dropped_false_negative += 1
        elif cfg.margin is not None and score > pos_score - cfg.margin:
            stats.dropped_margin += 1
        else:
            survivors.append((rank, text, score))
    if cfg.sampling == "top":
        chosen = survivors[: cfg.n_negatives]
    else:
        lo, hi = cfg.rank_range
        window = [s for s in survivors if lo <= s[0] < hi]
        take = min(cfg.n_negatives, len(window))
        if rng is None:
            raise ValueError("select_negatives: sampling 'range' needs a random generator (rng)")
        idx = sorted(rng.choice(len(window), size=take, replace=False)) if take else []
        chosen = [window[i] for i in idx]
    stats.negatives += len(chosen)
    if len(chosen) < cfg.n_negatives:
        stats.short_queries += 1
        stats.queries_without_negatives += not chosen
    return [c[1] for c in chosen], [c[2] for c in chosen]


def _positive_scores(
    chunk: list[MiningQuery], q_emb: np.ndarray, index: CorpusIndex | ShardCorpusIndex, teacher: Teacher
) -> list[dict[str, float]]:
    """Teacher scores of each query's positives: corpus vectors when indexed, else embedded."""
    flat = [(i, p) for i, mq in enumerate(chunk) for p in mq.positives]
    out: list[dict[str, float]] = [{} for _ in chunk]
    for indexed in (True, False):
        part = [(i, p) for i, p in flat if (p in index.pos) == indexed]
        if not part:
            continue
        if indexed:
            v = index.vectors([index.pos[p] for _, p in part])
        else:
            v = teacher.embed([p for _, p in part], "document")
        scores = np.einsum("nd,nd->n", v, q_emb[[i for i, _ in part]])
        for (i, p), s in zip(part, scores):
            out[i][p] = float(s)
    return out


def mine(
    queries: Iterable[MiningQuery],
    index: CorpusIndex | ShardCorpusIndex,
    teacher: Teacher,
    cfg: MiningConfig = MiningConfig(),
    stats: MiningStats | None = None,
    progress=None,
) -> Iterator[Example]:
    """Mine hard negatives for a stream of queries, one ``query_batch`` chunk at a time.

    Yields one :class:`Example` per query (positives with their teacher scores,
    negatives best first with theirs), in input order.
    """
    st = stats if stats is not None else MiningStats()
    it = iter(queries)
    n_done = 0
    while chunk := list(islice(it, cfg.query_batch)):
        q_emb = teacher.embed([mq.query for mq in chunk], "query")
        max_pos = max(len(mq.positives) for mq in chunk)
        scores, ids = index.search(q_emb, cfg.top_k + max_pos)
        pos_maps = _positive_scores(chunk, q_emb, index, teacher)
        cands = index.texts_of(ids)
        cand_scores = [s[: len(c)] for s, c in zip(scores, cands)]
        if teacher.rescores:
            final = teacher.rescore(
                [mq.query for mq in chunk], [list(mq.positives) + c for mq, c in zip(chunk, cands)]
            )
            pos_maps = [
                dict(zip(mq.positives, f[: len(mq.positives)].tolist())) for mq, f in zip(chunk, final)
            ]
            cand_scores = [f[len(mq.positives) :] for mq, f in zip(chunk, final)]
            order = [np.argsort(-s, kind="stable") for s in cand_scores]
            cands = [[c[k] for k in o] for c, o in zip(cands, order)]
            cand_scores = [s[o] for s, o in zip(cand_scores, order)]
        for i, mq in enumerate(chunk):
            st.queries += 1
            pos_scores = [pos_maps[i][p] for p in mq.positives]
            rng = np.random.default_rng([cfg.seed, n_done + i]) if cfg.sampling == "range" else None
            neg, neg_scores = select_negatives(
                cands[i], cand_scores[i], set(mq.positives), min(pos_scores), cfg, rng, st
            )
            yield Example(
                mq.query, list(mq.positives), neg, pos_scores, neg_scores, mq.source, mq.lang, mq.id
            )
        n_done += len(chunk)
        if progress is not None:
            progress.update(len(chunk))


def queries_from_records(path: str | os.PathLike, bad: BadLines | None = None) -> Iterator[MiningQuery]:
    """Mining queries from a pair / triple / example file (their positives; existing negatives are replaced)."""
    for rec in read_records(path, bad=bad):
        ex = rec.to_example()
        yield MiningQuery(ex.query, tuple(dict.fromkeys(ex.pos)), ex.id, ex.source, ex.lang)


def queries_from_beir(
    beir_dir: str | os.PathLike,
    split: str = "train",
    corpus: dict[str, str] | None = None,
    bad: BadLines | None = None,
    stats: MiningStats | None = None,
) -> Iterator[MiningQuery]:
    """Mining queries from a BEIR directory: positives are the docs with grade > 0 in ``qrels/<split>.tsv``.

    Queries without a positive are skipped (they cannot be mined) and counted in
    ``stats.skipped_without_positive``; the qrels are held in memory.
    """
    d = Path(beir_dir)
    texts = (
        corpus if corpus is not None else {doc.id: doc.text for doc in read_corpus(d / "corpus.jsonl", bad)}
    )
    rel: dict[str, list[str]] = {}
    for qrel in read_qrels(d / "qrels" / f"{split}.tsv", bad, doc_ids=set(texts)):
        if qrel.score > 0:
            rel.setdefault(qrel.query_id, []).append(texts[qrel.doc_id])
    for q in read_queries(d / "queries.jsonl", bad):
        if q.id in rel:
            yield MiningQuery(q.text, tuple(dict.fromkeys(rel[q.id])), q.id, d.name)
        elif stats is not None:
            stats.skipped_without_positive += 1


def _corpus_texts(
    corpus: str | os.PathLike | None, input_path: Path, beir_split: str | None, bad: BadLines | None
) -> Iterator[str]:
    if corpus is not None:
        for _, obj in iter_rows(corpus, bad):
            text = obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{corpus}: every corpus line needs a non-empty 'text' field (BEIR corpus layout)"
                )
            yield text
    elif beir_split is not None:
        for doc in read_corpus(input_path / "corpus.jsonl", bad):
            yield doc.text
    else:  # the positives and given negatives of the input are the corpus
        # bad lines are reported once, by the query pass; this pass skips them quietly
        for rec in read_records(input_path, bad=None if bad is None else BadLines(os.devnull)):
            ex = rec.to_example()
            yield from ex.pos
            yield from ex.neg


def mine_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    teacher: Teacher,
    cfg: MiningConfig = MiningConfig(),
    corpus: str | os.PathLike | None = None,
    beir_split: str | None = None,
    bad: BadLines | None = None,
    progress: bool = False,
    short_path: str | os.PathLike | None = None,
) -> MiningStats:
    """Mine a whole file (or BEIR directory) into an example JSONL, written atomically.

    Args:
        input_path: pair/triple/example JSONL/parquet, or a BEIR directory (with ``beir_split``).
        output_path: the example JSONL (``.gz`` compresses).
        teacher: a :class:`~embforge.data.teachers.Teacher`.
        corpus: a JSONL/parquet of ``{"text": ...}`` rows (e.g. a BEIR corpus) to mine from, or the
            folder of a sharded encode (its vectors are used, searched from disk; the teacher
            must be the model that wrote them);
            default: the BEIR corpus, or the positives and negatives of the input file.
        short_path: if given, examples with fewer than ``n_negatives`` negatives go to this
            file instead of the output (training recipes that need exactly n can then use the
            output as is); their count is ``stats.short_queries`` either way.
    """
    inp = Path(input_path)
    if beir_split is None and inp.is_dir():
        raise DataError(f"{inp} is a directory: give a BEIR split (--split) or a record file")
    check_output(output_path, inputs=[input_path, corpus])  # `mine X X` would overwrite its input
    stats = MiningStats()
    index: CorpusIndex | ShardCorpusIndex
    if corpus is not None and is_shard_dir(corpus):  # vectors from the shards, searched from disk
        index = ShardCorpusIndex(corpus)
    else:
        texts = _corpus_texts(corpus, inp, beir_split, bad)
        index = CorpusIndex(texts, teacher, cfg.corpus_batch, progress, cfg.index, ef_search=cfg.ef_search)
    if beir_split is not None:
        queries = queries_from_beir(inp, beir_split, None, bad, stats)
        total = None
    else:
        queries = queries_from_records(inp, bad)
        total = count_rows(inp) if progress else None
    bar = tqdm(total=total, desc="mine", unit="q", disable=not progress, file=sys.stderr)
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(atomic_write(output_path))
        short_fh = stack.enter_context(atomic_write(short_path)) if short_path is not None else None
        for ex in mine(queries, index, teacher, cfg, stats, bar):
            out = short_fh if short_fh is not None and len(ex.neg) < cfg.n_negatives else fh
            out.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    bar.close()
    return stats
