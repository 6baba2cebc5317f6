"""`embforge search`: queries -> run file (TREC or JSON) over an index made by `embforge index`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    batch_size_option,
    dtype_option,
    max_length_option,
    model_option,
    output_option,
    progress_option,
    set_threads,
    show_progress,
    threads_option,
)
from embforge.cli._outputs import claim
from embforge.errors import DataError


def read_query_texts(path: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) from queries.jsonl ({_id, text}), a BEIR directory, or a text file (one per line)."""
    from embforge.data.io import read_queries, read_text_file

    if path.is_dir():
        path = path / "queries.jsonl"
    if not path.exists():
        raise DataError(
            f"queries {str(path)!r} do not exist; pass queries.jsonl, a BEIR directory or a text file"
        )
    if path.suffix in (".jsonl", ".gz", ".json", ".ndjson"):
        qs = list(read_queries(path))
        ids, texts = [q.id for q in qs], [q.text for q in qs]
    else:
        lines = read_text_file(path).splitlines()
        ids = [str(n) for n, t in enumerate(lines, 1) if t.strip()]
        texts = [t for t in lines if t.strip()]
    if not ids:
        raise DataError(f"{path}: no queries found")
    return ids, texts


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search(
        index_dir: Path = typer.Argument(..., help="Index directory written by `embforge index`."),
        queries: Path = typer.Argument(
            ..., help="queries.jsonl ({_id, text}), a BEIR directory, or a text file."
        ),
        output: Path = output_option("Run file: .trec (TREC format) or .json (pytrec_eval run)."),
        k: int = typer.Option(10, "--top-k", "-k", help="Results per query."),
        fusion: Optional[str] = typer.Option(
            None,
            "--fusion",
            help="weighted (w1*dense + w2*sparse + w3*multivector), minmax, zscore or rrf (default: the "
            "model's fusion.json from `embforge tune-fusion`, else the index's).",
        ),
        weights: Optional[str] = typer.Option(
            None,
            "--weights",
            help="Hybrid weights: dense,sparse,multivector (1,0.3,1) or head=weight pairs (sparse=1); "
            "a head left out weighs 0 (default: the model's fusion.json, else 1,0.3,1 for weighted; "
            "1,1,1 for rrf).",
        ),
        candidates: Optional[int] = typer.Option(
            None, "--candidates", help="Candidates per retrieving head before re-ranking (default 100)."
        ),
        model: Optional[str] = model_option(
            "Model for the queries (default: the one recorded in the index)."
        ),
        batch_size: int = batch_size_option("Queries per forward pass."),
        max_length: Optional[int] = max_length_option("Token limit per query (default: the index's)."),
        dtype: str = dtype_option(),
        threads: Optional[int] = threads_option(),
        progress: Optional[bool] = progress_option(),
    ) -> None:
        """Search an index with queries and write a run file.

        Example: embforge search idx/ data/dbpedia_subset -o run.trec -k 100 --fusion rrf
        """
        import time

        from embforge.scoring import FUSIONS, parse_weights
        from embforge.search.retriever import Retriever
        from embforge.search.runs import run_format, write_run

        run_format(output)  # fail before loading anything
        claim(output, inputs=[queries, index_dir])
        if fusion is not None:
            FUSIONS.get(fusion)
        w = parse_weights(weights, "--weights")
        qids, texts = read_query_texts(queries)
        set_threads(threads)
        r = Retriever.load(index_dir, model=model)
        typer.echo(f"queries encoded with {r.model_source or 'the bundled all-MiniLM-L6-v2'}", err=True)
        enc_kw = {"batch_size": batch_size, "dtype": dtype, "show_progress": show_progress(progress)}
        if max_length is not None:
            enc_kw["max_length"] = max_length
        t0 = time.perf_counter()
        hits = r.search(
            texts,
            k=k,
            fusion=fusion,
            weights=w,
            candidates=candidates,
            encode_kwargs=enc_kw,
        )
        write_run(output, qids, hits)
        typer.echo(f"searched {len(qids)} queries in {time.perf_counter() - t0:.1f}s -> {output}", err=True)
