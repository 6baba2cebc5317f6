"""Consistency filtering of (query, document) pairs (Arctic-Embed 2.0).

Split each source's pairs into shards of ``shard_size`` (Arctic: about 3M per dataset), embed queries and
documents with a small model, and keep a pair only if its own document ranks in the
top ``top_k`` (Arctic: 20) for its query among all documents of the shard. Rank =
number of other shard documents scoring higher than the pair's own document (ties
within a 1e-5 relative tolerance do not count), so duplicated documents do not push
each other out.

Memory: one shard at a time (its records and two (n, D) float32 matrices); ranks are
computed in (query block x document block) tiles. Choose ``shard_size`` to fit memory:
3M pairs at D = 384 need about 9 GiB for the embeddings.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from tqdm import tqdm

from embforge.data.formats import Record
from embforge.data.io import BadLines, atomic_write, check_output, read_records
from embforge.data.teachers import Teacher
from embforge.errors import ConfigError
from embforge.scoring import dense_scores

__all__ = ["FilterConfig", "FilterStats", "consistency_ranks", "filter_records", "filter_file"]


@dataclass(frozen=True)
class FilterConfig:
    """Attributes:
    shard_size: pairs per shard (documents compete within a shard).
    top_k: keep a pair if fewer than ``top_k`` shard documents outscore its own.
    query_block, doc_block: tile sizes of the rank computation (memory ~ q x d x 4 bytes).
    by_source: shard each ``source`` separately (Arctic: per dataset); memory then holds up
        to one partial shard per source.
    """

    shard_size: int = 3_000_000
    top_k: int = 20
    query_block: int = 1024
    doc_block: int = 16384
    by_source: bool = True

    def __post_init__(self) -> None:
        bad = [
            f"{k}={getattr(self, k)}"
            for k in ("shard_size", "top_k", "query_block", "doc_block")
            if getattr(self, k) < 1
        ]
        if bad:
            raise ConfigError(f"invalid filter settings: {', '.join(bad)}; each must be >= 1")


@dataclass
class FilterStats:
    """Kept / dropped counts per source (``""`` = records without a source)."""

    kept: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    shards: int = 0

    def add(self, source: str, keep: bool) -> None:
        d = self.kept if keep else self.dropped
        d[source] = d.get(source, 0) + 1

    def table(self) -> str:
        """A per-source report (markdown table)."""
        rows = ["| source | kept | dropped | kept % |", "| --- | ---: | ---: | ---: |"]
        for s in sorted(set(self.kept) | set(self.dropped)):
            k, d = self.kept.get(s, 0), self.dropped.get(s, 0)
            rows.append(f"| {s or '(none)'} | {k} | {d} | {100.0 * k / max(k + d, 1):.1f} |")
        k, d = sum(self.kept.values()), sum(self.dropped.values())
        rows.append(f"| **all** ({self.shards} shards) | {k} | {d} | {100.0 * k / max(k + d, 1):.1f} |")
        return "\n".join(rows)


def consistency_ranks(
    q: np.ndarray, d: np.ndarray, query_block: int = 1024, doc_block: int = 16384, tie_tol: float = 1e-5
) -> np.ndarray:
    """For pair i: how many other documents j score higher than document i for query i.

    Scores within a relative ``tie_tol`` of the own document's score are ties (float32
    rounding must not let an identical duplicate document outrank the own one).

    Args:
        q: (n, D) query vectors; d: (n, D) document vectors, row i = pair i's document.

    Returns:
        (n,) int64 ranks (0 = its own document is the best).

    Example:
        >>> q = np.array([[1.0, 0.0], [1.0, 0.0]]); d = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> consistency_ranks(q, d).tolist()
        [0, 1]
    """
    q = np.asarray(q, dtype=np.float32)
    d = np.asarray(d, dtype=np.float32)
    own = np.einsum("nd,nd->n", q, d)  # (n,)
    ranks = np.zeros(len(q), dtype=np.int64)
    for a in range(0, len(q), query_block):
        qb = q[a : a + query_block]
        thr = own[a : a + len(qb), None] + tie_tol * np.maximum(np.abs(own[a : a + len(qb), None]), 1.0)
        rows = np.arange(a, a + len(qb))
        for b in range(0, len(d), doc_block):
            higher = dense_scores(qb, d[b : b + doc_block]) > thr  # (q, n)
            own_col = rows - b
            inside = (own_col >= 0) & (own_col < higher.shape[1])
            higher[np.nonzero(inside)[0], own_col[inside]] = False  # a document never outranks itself
            ranks[a : a + len(qb)] += higher.sum(1)
    return ranks


def _pair_texts(rec: Record) -> tuple[str, str]:
    ex = rec.to_example()
    return ex.query, ex.pos[0]


def _embed_unique(texts: list[str], teacher: Teacher, role: str) -> np.ndarray:
    """Embed each distinct text once (many pairs share a document) and expand to (len(texts), D)."""
    pos: dict[str, int] = {}
    inverse = np.fromiter((pos.setdefault(t, len(pos)) for t in texts), np.int64, len(texts))
    return teacher.embed(list(pos), role)[inverse]


def _shards(records: Iterable[Record], size: int, by_source: bool) -> Iterator[list[Record]]:
    """Shards of ``size`` records; with ``by_source`` each shard holds one source only."""
    it = iter(records)
    if not by_source:
        while shard := list(islice(it, size)):
            yield shard
        return
    buffers: dict[str, list[Record]] = {}
    for rec in it:
        buf = buffers.setdefault(rec.source, [])
        buf.append(rec)
        if len(buf) == size:
            yield buffers.pop(rec.source)
    yield from (buf for buf in buffers.values() if buf)


def filter_records(
    records: Iterable[Record],
    teacher: Teacher,
    cfg: FilterConfig = FilterConfig(),
    stats: FilterStats | None = None,
    progress=None,
) -> Iterator[tuple[Record, bool, int]]:
    """Yield ``(record, kept, rank)`` for every record, one shard at a time.

    The pair is (query, first positive) for every record kind. With ``cfg.by_source``
    (default, as Arctic shards each dataset separately) a shard holds one source, and
    records come out grouped by shard (input order within a source); otherwise shards
    are consecutive input records and the order is the input order.
    """
    st = stats if stats is not None else FilterStats()
    for shard in _shards(records, cfg.shard_size, cfg.by_source):
        st.shards += 1
        texts = [_pair_texts(r) for r in shard]
        q = _embed_unique([t[0] for t in texts], teacher, "query")
        d = _embed_unique([t[1] for t in texts], teacher, "document")
        ranks = consistency_ranks(q, d, cfg.query_block, cfg.doc_block)
        for rec, rank in zip(shard, ranks):
            keep = bool(rank < cfg.top_k)
            st.add(rec.source, keep)
            yield rec, keep, int(rank)
        if progress is not None:
            progress.update(len(shard))


def filter_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    teacher: Teacher,
    cfg: FilterConfig = FilterConfig(),
    dropped_path: str | os.PathLike | None = None,
    bad: BadLines | None = None,
    progress: bool = False,
) -> FilterStats:
    """Filter a record file; kept records go to ``output_path``, dropped ones (with their
    ``rank``) to ``dropped_path`` if given. Both written atomically."""
    check_output(output_path, inputs=[input_path])
    if dropped_path is not None:
        check_output(dropped_path, inputs=[input_path, output_path])
    stats = FilterStats()
    bar = tqdm(desc="filter", unit="pair", disable=not progress, file=sys.stderr)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(atomic_write(output_path))
        dropped = stack.enter_context(atomic_write(dropped_path)) if dropped_path else None
        for rec, keep, rank in filter_records(read_records(input_path, bad=bad), teacher, cfg, stats, bar):
            if keep:
                out.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            elif dropped is not None:
                dropped.write(json.dumps({**rec.to_dict(), "rank": rank}, ensure_ascii=False) + "\n")
    bar.close()
    return stats
