"""`embforge mine`: hard negatives with TopK-PercPos false-negative filtering.

TopK-PercPos (Moreira et al., 2024, "NV-Retriever: Improving text embedding models with effective
hard-negative mining") drops candidates that score above a share of the positive's score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    backend_option,
    batch_size_option,
    heads_option,
    max_length_option,
    model_option,
    output_option,
    progress_option,
    resolve_heads,
    set_threads,
    show_progress,
    split_option,
    threads_option,
)
from embforge.cli._outputs import claim
from embforge.errors import ConfigError, DataError


def _rank_range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--rank-range {text!r}: write LO:HI, e.g. 10:100") from None
    return lo, hi


def mine_command(
    input_path: Path = typer.Argument(
        ...,
        help="Pairs / triples / examples (JSONL, .jsonl.gz, parquet), or a BEIR folder (qrels from --split).",
    ),
    output: Path = output_option("Output examples JSONL: query, pos, neg, pos_scores, neg_scores."),
    model: Optional[str] = model_option(
        "Teacher: an embforge / BGE-M3 / sentence-transformers path or hub id "
        "(default: the bundled all-MiniLM-L6-v2)."
    ),
    heads: str = heads_option(
        "Teacher heads, comma-separated: dense, or dense,sparse,multivector (hybrid rescoring); "
        "'auto' = the heads the checkpoint has trained weights for."
    ),
    corpus: Optional[Path] = typer.Option(
        None,
        "--corpus",
        help="Corpus to mine from (rows with a 'text' field, e.g. a BEIR corpus.jsonl), or a folder of "
        "`embforge encode CORPUS -o DIR/` shards (searched from disk, not re-encoded; --model defaults to "
        "theirs); default: the BEIR corpus, or every positive/negative text of the input.",
    ),
    split: str = split_option("With a BEIR folder: the qrels split (qrels/<split>.tsv)."),
    top_k: int = typer.Option(
        100, "--top-k", "-k", help="Candidates retrieved per query (positives excluded)."
    ),
    negatives: int = typer.Option(7, "--negatives", "-n", help="Negatives per query (M3 used 7)."),
    perc_pos: float = typer.Option(
        0.95, "--perc-pos", help="TopK-PercPos: drop candidates scoring above p x the positive's score."
    ),
    no_perc_pos: bool = typer.Option(False, "--no-perc-pos", help="Turn the TopK-PercPos filter off."),
    margin: Optional[float] = typer.Option(
        None, "--margin", help="Also drop candidates scoring above (positive score - margin)."
    ),
    sampling: str = typer.Option(
        "top", "--sampling", help="top (best survivors) | range (random in --rank-range)."
    ),
    rank_range: str = typer.Option(
        "10:100", "--rank-range", help="LO:HI ranks for --sampling range (ANCE-style)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for --sampling range."),
    query_batch: int = typer.Option(512, "--query-batch", help="Queries per chunk (bounds memory)."),
    dense_index: str = typer.Option(
        "exact",
        "--dense-index",
        help="Corpus index: exact (flat inner product) | hnsw (approximate, for millions of documents).",
    ),
    ef_search: int = typer.Option(256, "--ef-search", help="HNSW search breadth (higher = better recall)."),
    batch_size: int = batch_size_option("Texts per teacher forward pass."),
    max_length: Optional[int] = max_length_option(),
    short: str = typer.Option(
        "keep",
        "--short",
        help="Queries with fewer negatives than asked: keep (in the output) | "
        "separate (to OUTPUT.short.jsonl, so the output has exactly --negatives each).",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Write malformed input lines to OUTPUT.bad.jsonl instead of stopping."
    ),
    progress: Optional[bool] = progress_option(),
    threads: Optional[int] = threads_option(),
    backend: str = backend_option(),
) -> None:
    """Mine hard negatives with a teacher model, dropping likely false negatives (TopK-PercPos).

    The corpus is embedded into an exact faiss inner-product index; queries stream in chunks, so
    memory does not grow with the number of queries. Prints how many candidates were dropped.
    """
    from embforge.data.io import precheck_records
    from embforge.data.mining import MiningConfig

    if short not in ("keep", "separate"):
        raise ConfigError(f"--short {short!r}: choose from: keep, separate")
    claim(output, inputs=[input_path, corpus])
    cfg = MiningConfig(
        top_k=top_k,
        n_negatives=negatives,
        perc_pos=None if no_perc_pos else perc_pos,
        margin=margin,
        sampling=sampling,
        rank_range=_rank_range(rank_range),
        seed=seed,
        query_batch=query_batch,
        index="flat" if dense_index == "exact" else dense_index,
        ef_search=ef_search,
    )
    if not input_path.exists():  # checked before the teacher model loads
        raise DataError(f"input {str(input_path)!r} does not exist; pass a record file or a BEIR folder")
    set_threads(threads)
    beir_split = split if input_path.is_dir() else None
    if corpus is not None and corpus.is_dir():  # shards of a sharded encode: their model by default
        from embforge.data.shards import read_manifest

        model = model or read_manifest(corpus).get("model")
    if not skip_bad:  # a corrupt input fails now, not after the teacher has loaded
        precheck_records(input_path, beir_split, None if corpus is not None and corpus.is_dir() else corpus)
    teacher = _teacher(model, heads, batch_size, max_length, backend)
    short_path = output.with_name(output.name + ".short.jsonl") if short == "separate" else None
    _mine(
        input_path, output, teacher, cfg, (corpus, beir_split), skip_bad, show_progress(progress), short_path
    )


def _teacher(model: str | None, heads: str, batch_size: int, max_length: int | None, backend: str = "auto"):
    """The teacher encoder with the requested heads (comma-separated)."""
    from embforge.data.teachers import EncoderTeacher
    from embforge.model.encoder import Encoder

    teacher_heads = resolve_heads(heads, model)
    encoder = Encoder.from_pretrained(model, heads=teacher_heads, backend=backend)
    return EncoderTeacher(encoder, teacher_heads, batch_size=batch_size, max_length=max_length)


def _mine(input_path, output, teacher, cfg, source, skip_bad, progress, short_path) -> None:
    """Run the mining, bad lines to OUTPUT.bad.jsonl with --skip-bad, and print the counts."""
    from embforge.data.io import BadLines
    from embforge.data.mining import mine_file

    corpus, beir_split = source
    bad = BadLines(output.with_name(output.name + ".bad.jsonl")) if skip_bad else None
    try:
        stats = mine_file(input_path, output, teacher, cfg, corpus, beir_split, bad, progress, short_path)
    finally:
        if bad is not None:
            bad.close()
    typer.echo(f"{output}: {stats.summary()}")
    if short_path is not None and stats.short_queries:
        typer.echo(f"{stats.short_queries} examples with fewer negatives written to {short_path}")
    if bad is not None:
        typer.echo(bad.summary(), err=True)


def register(app: typer.Typer) -> None:
    app.command("mine")(mine_command)
