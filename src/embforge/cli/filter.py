"""`embforge filter` (consistency filtering) and `embforge dedup` (exact duplicates)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    batch_size_option,
    max_length_option,
    model_option,
    output_option,
    progress_option,
    set_threads,
    show_progress,
    threads_option,
)
from embforge.cli._outputs import claim


def _bad(skip_bad: bool, output: Path):
    from embforge.data.io import BadLines

    return BadLines(output.with_name(output.name + ".bad.jsonl")) if skip_bad else None


SKIP_BAD_HELP = "Write malformed input lines to OUTPUT.bad.jsonl (with their errors) instead of stopping."


def filter_command(
    input_path: Path = typer.Argument(
        ..., help="Pairs (or triples / examples: query + first positive), JSONL or parquet."
    ),
    output: Path = output_option("Kept records, JSONL (.gz compresses)."),
    model: Optional[str] = model_option(
        "Small embedding model (path or hub id; Arctic used multilingual-e5-small). "
        "Default: the bundled all-MiniLM-L6-v2."
    ),
    shard_size: int = typer.Option(
        3_000_000, "--shard-size", help="Pairs per shard; documents compete within a shard."
    ),
    top_k: int = typer.Option(
        20, "--top-k", "-k", help="Keep a pair if its document ranks in the top k for its query."
    ),
    dropped: Optional[Path] = typer.Option(
        None, "--dropped", help="Also write dropped records (with their rank) here."
    ),
    batch_size: int = batch_size_option(),
    max_length: Optional[int] = max_length_option(),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
    progress: Optional[bool] = progress_option(),
    threads: Optional[int] = threads_option(),
) -> None:
    """Consistency filtering (Arctic-Embed 2.0): drop pairs whose document is not in the top k for its query."""
    from embforge.data.filtering import FilterConfig, filter_file
    from embforge.data.io import precheck_records
    from embforge.data.teachers import EncoderTeacher
    from embforge.model.encoder import Encoder

    claim(output, inputs=[input_path])
    if dropped is not None:
        claim(dropped, inputs=[input_path, output])
    cfg = FilterConfig(shard_size=shard_size, top_k=top_k)
    set_threads(threads)
    if not skip_bad:
        precheck_records(input_path)  # a corrupt line fails now, not after the model has loaded
    encoder = Encoder.from_pretrained(model, heads=("dense",))
    teacher = EncoderTeacher(encoder, batch_size=batch_size, max_length=max_length)
    bad = _bad(skip_bad, output)
    try:
        stats = filter_file(input_path, output, teacher, cfg, dropped, bad, show_progress(progress))
    finally:
        if bad is not None:
            bad.close()
    typer.echo(stats.table())
    if bad is not None:
        typer.echo(bad.summary(), err=True)


def dedup_command(
    input_path: Path = typer.Argument(..., help="Training records (JSONL, .jsonl.gz, parquet)."),
    output: Path = output_option("Records without exact duplicates (first occurrence kept)."),
    dropped: Optional[Path] = typer.Option(None, "--dropped", help="Also write the removed duplicates here."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_BAD_HELP),
) -> None:
    """Remove exact duplicate records (same kind and texts; metadata ignored), streaming."""
    from embforge.data.dedup import dedup_file

    claim(output, inputs=[input_path])
    if dropped is not None:
        claim(dropped, inputs=[input_path, output])
    bad = _bad(skip_bad, output)
    try:
        stats = dedup_file(input_path, output, dropped, bad)
    finally:
        if bad is not None:
            bad.close()
    typer.echo(f"{output}: {stats.summary()}")
    if bad is not None:
        typer.echo(bad.summary(), err=True)


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_command)
    app.command("dedup")(dedup_command)
