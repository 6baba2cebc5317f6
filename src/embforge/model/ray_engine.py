"""Sharded encoding on Ray (``embforge encode CORPUS -o DIR/ --engine ray``): the same shards as torchrun.

A Ray Data pipeline: a dataset of the pending shards (each a byte offset into the corpus, from
one fast pass of the driver) -> ``map_batches`` with an encoder actor per worker (the model is
loaded once per actor) that reads its shard's records, encodes them with
:func:`embforge.model.sharded.encode_shard` and writes the shard atomically -> the driver writes
the manifest. Shard ``i`` is records ``[i*S, (i+1)*S)`` encoded by one ``Encoder.encode`` call,
exactly as on torchrun, so the files are the same; finished shards are skipped on a re-run.
``ray.init(address)`` joins a cluster (``auto`` inside one) or starts a local Ray.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embforge.data.shards import (
    check_job,
    finalize,
    read_rows_at,
    shard_name,
    shard_offsets,
    shard_rows,
    write_shard,
)
from embforge.errors import ConfigError
from embforge.model.encoder import Encoder
from embforge.model.sharded import ShardReport, encode_shard, job_settings

__all__ = ["ShardEncoder", "encode_to_shards_ray"]


class ShardEncoder:
    """The Ray actor: loads the model once, then encodes and writes the shards it is given."""

    def __init__(
        self,
        model: str | None,
        heads: list[str],
        corpus: str,
        out: str,
        shard_size: int,
        text_field: str,
        encode_kwargs: dict[str, Any],
        threads: int | None,
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.enc = Encoder.from_pretrained(model, heads=tuple(heads))
        self.heads, self.corpus, self.out = tuple(heads), corpus, Path(out)
        self.text_field, self.kw = text_field, encode_kwargs

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for i, off, line, n in zip(batch["shard"], batch["offset"], batch["line"], batch["rows"]):
            rows = read_rows_at(self.corpus, int(off), int(line), int(n), self.text_field)
            write_shard(self.out / shard_name(int(i)), encode_shard(self.enc, rows, self.heads, self.kw))
            done.append(int(i))
        return {"shard": done}


def encode_to_shards_ray(
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    heads: tuple[str, ...],
    shard_size: int = 10_000,
    *,
    model: str | None = None,
    text_field: str = "text",
    encode_kwargs: dict[str, Any] | None = None,
    workers: int = 2,
    threads: int | None = None,
    address: str | None = None,
) -> ShardReport:
    """Encode ``corpus`` into ``out`` on Ray with ``workers`` encoder actors (``threads`` torch threads each)."""
    import ray  # optional dependency: pip install 'embforge[ray]'

    if shard_size < 1 or workers < 1:
        raise ConfigError("--shard-size and --workers must be positive")
    kw = {k: v for k, v in (encode_kwargs or {}).items() if k != "show_progress"}
    d = Path(out)
    check_job(d, job_settings(corpus, model, heads, shard_size, text_field, kw))
    offsets = shard_offsets(corpus, shard_size)
    rep = ShardReport(rows=sum(c for _, _, c in offsets), shards=len(offsets))
    todo = [i for i, (_, _, c) in enumerate(offsets) if shard_rows(d / shard_name(i)) != c]
    rep.skipped = [i for i in range(len(offsets)) if i not in set(todo)]
    if todo:
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        items = [
            {"shard": i, "offset": offsets[i][0], "line": offsets[i][1], "rows": offsets[i][2]} for i in todo
        ]
        ds = ray.data.from_items(items).map_batches(
            ShardEncoder,
            batch_size=1,
            concurrency=min(workers, len(todo)),
            num_cpus=threads or 1,
            fn_constructor_kwargs={
                "model": model,
                "heads": list(heads),
                "corpus": str(Path(corpus).absolute()),
                "out": str(d.absolute()),
                "shard_size": shard_size,
                "text_field": text_field,
                "encode_kwargs": kw,
                "threads": threads,
            },
        )
        rep.encoded = sorted(int(r["shard"]) for r in ds.take_all())
    rep.complete = finalize(d, rep.shards, rep.rows)
    return rep
