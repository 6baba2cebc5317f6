"""Exact-duplicate removal for training records, streaming and hash-based.

Two records are duplicates when their kind and texts are equal (metadata such as
``source``, ``lang``, ``id`` and teacher scores are ignored, so the same pair from two
sources is kept once: the first one seen). Memory: one 16-byte BLAKE2b digest per
unique record in a set (about 100 bytes each with Python's overhead: ~1 GB per 10M).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from embforge.data.formats import Example, Pair, Record, ScoredPair, Triple
from embforge.data.io import BadLines, atomic_write, check_output, read_records

__all__ = ["DedupStats", "record_key", "dedup_records", "dedup_file"]


@dataclass
class DedupStats:
    records: int = 0
    duplicates: int = 0

    def summary(self) -> str:
        return f"{self.records} records, {self.duplicates} exact duplicates removed, {self.records - self.duplicates} kept"


def record_key(rec: Record) -> bytes:
    """16-byte digest of a record's kind and texts.

    Example:
        >>> record_key(Pair("q", "p", source="a")) == record_key(Pair("q", "p", source="b"))
        True
    """
    if isinstance(rec, (Pair, Triple)):
        texts: list = [rec.query, rec.positive, getattr(rec, "negative", None)]
    elif isinstance(rec, ScoredPair):
        texts = [rec.sentence1, rec.sentence2, rec.score]
    elif isinstance(rec, Example):
        texts = [rec.query, rec.pos, rec.neg]
    else:  # pragma: no cover - Record is a closed union
        raise TypeError(f"not a record: {type(rec).__name__}")
    payload = json.dumps([rec.kind, *texts], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).digest()


def dedup_records(
    records: Iterable[Record], stats: DedupStats | None = None, dropped=None
) -> Iterator[Record]:
    """Yield the first occurrence of each record; ``dropped(rec)`` is called for each duplicate."""
    st = stats if stats is not None else DedupStats()
    seen: set[bytes] = set()
    for rec in records:
        st.records += 1
        key = record_key(rec)
        if key in seen:
            st.duplicates += 1
            if dropped is not None:
                dropped(rec)
            continue
        seen.add(key)
        yield rec


def dedup_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    dropped_path: str | os.PathLike | None = None,
    bad: BadLines | None = None,
) -> DedupStats:
    """Deduplicate a record file into ``output_path`` (atomic); duplicates optionally to ``dropped_path``."""
    import contextlib

    check_output(output_path, inputs=[input_path])
    if dropped_path is not None:
        check_output(dropped_path, inputs=[input_path, output_path])
    stats = DedupStats()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(atomic_write(output_path))
        dfh = stack.enter_context(atomic_write(dropped_path)) if dropped_path else None

        def drop(rec: Record) -> None:
            if dfh is not None:
                dfh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")

        for rec in dedup_records(read_records(input_path, bad=bad), stats, drop):
            out.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    return stats
