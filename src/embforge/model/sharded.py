"""Sharded, resumable corpus encoding: a corpus stream -> parquet shards + manifest (``embforge.data.shards``).

Shard ``i`` is records ``[i*S, (i+1)*S)`` of the input, encoded by one call of
``Encoder.encode`` on exactly those texts; process ``rank`` of ``world`` (torchrun's ``RANK`` and
``WORLD_SIZE``) encodes the shards with ``i % world == rank``. So the shards do not depend on how
many processes made them: 1 process, 2 processes, a resume with another process count, or Ray
(each shard encoded alone) write the same files. Every process streams the whole input (keeping
only its current shard's records), so memory does not grow with the corpus, and no process group
is needed: the last process to finish finds every shard present and writes the manifest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embforge.data.shards import (
    CorpusRow,
    check_job,
    embeddings_table,
    finalize,
    iter_corpus_rows,
    remove_stale_temps,
    shard_name,
    shard_rows,
    write_shard,
)
from embforge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from embforge.model.encoder import Encoder

__all__ = [
    "ShardReport",
    "dist_rank",
    "encode_shard",
    "encode_to_shards",
    "iter_shard_chunks",
    "job_settings",
]

logger = logging.getLogger("embforge")


@dataclass
class ShardReport:
    """What one process did: shards encoded here, shards found finished, rows, and whether the job is complete."""

    encoded: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    rows: int = 0
    shards: int = 0
    complete: bool = False
    seconds: float = 0.0


def dist_rank() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment (``RANK``, ``WORLD_SIZE``); (0, 1) outside it."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def iter_shard_chunks(rows: Iterator[CorpusRow], shard_size: int) -> Iterator[tuple[int, list[CorpusRow]]]:
    """(shard number, its records) in input order; a repeated id inside a shard is a DataError."""
    chunk: list[CorpusRow] = []
    i = 0
    for r in rows:
        chunk.append(r)
        if len(chunk) == shard_size:
            yield i, chunk
            chunk, i = [], i + 1
    if chunk:
        yield i, chunk


def job_settings(
    corpus: str | os.PathLike,
    model: str | None,
    heads: Sequence[str],
    shard_size: int,
    text_field: str,
    encode_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """What the shards are made of (``job.json``): input file (path, size, mtime), model, heads and options."""
    p = Path(corpus).absolute()
    st = p.stat()
    return {
        "input": str(p),
        "input_bytes": st.st_size if p.is_file() else None,
        "input_mtime_ns": st.st_mtime_ns,
        "model": model,
        "heads": list(heads),
        "shard_size": int(shard_size),
        "text_field": text_field,
        "encode": {k: v for k, v in sorted(encode_kwargs.items()) if k != "show_progress"},
    }


def encode_shard(
    enc: Encoder, rows: Sequence[CorpusRow], heads: Sequence[str], encode_kwargs: dict[str, Any]
) -> Any:
    """One shard's parquet table: ``enc.encode`` on exactly these texts (documents)."""
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        # set.add returns None: ``or seen.add(i)`` records i and keeps the test false
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]  # see above
        raise DataError(f"document id {dup!r} occurs more than once; ids must be unique")
    emb = enc.encode([r.passage for r in rows], role="document", heads=tuple(heads), **encode_kwargs)
    return embeddings_table(rows, emb)


def encode_to_shards(
    enc: Encoder,
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    heads: Sequence[str],
    shard_size: int = 10_000,
    *,
    model: str | None = None,
    text_field: str = "text",
    encode_kwargs: dict[str, Any] | None = None,
    rank: int | None = None,
    world: int | None = None,
) -> ShardReport:
    """Encode this process's share of ``corpus`` into ``out/shard-*.parquet`` (see the module docstring).

    Finished shards are skipped; the manifest is written once every shard exists.
    """
    if shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size}: give a positive number of records per shard")
    kw = dict(encode_kwargs or {})
    if rank is None or world is None:
        rank, world = dist_rank()
    d = Path(out)
    check_job(d, job_settings(corpus, model, heads, shard_size, text_field, kw))
    rep, t0 = ShardReport(), time.perf_counter()
    for i, chunk in iter_shard_chunks(iter_corpus_rows(corpus, text_field), shard_size):
        rep.shards, rep.rows = i + 1, rep.rows + len(chunk)
        if i % world != rank:
            continue
        target = d / shard_name(i)
        if shard_rows(target) == len(chunk):
            rep.skipped.append(i)
            continue
        remove_stale_temps(d, [i])
        write_shard(target, encode_shard(enc, chunk, heads, kw))
        rep.encoded.append(i)
        logger.info("rank %d: shard %d (%d rows) -> %s", rank, i, len(chunk), target)
    if rep.rows == 0:
        raise DataError(f"{corpus}: the corpus is empty")
    rep.complete = finalize(d, rep.shards, rep.rows)
    rep.seconds = time.perf_counter() - t0
    return rep
