"""`embforge validate`: check a data file or BEIR folder before training or evaluating on it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import split_option


def _validate_beir(folder: Path, split: str, bad) -> list[str]:
    from embforge.data.io import read_corpus, read_qrels, read_queries

    docs = {d.id for d in read_corpus(folder / "corpus.jsonl", bad)}
    queries = {q.id for q in read_queries(folder / "queries.jsonl", bad)}
    qrels = list(read_qrels(folder / "qrels" / f"{split}.tsv", bad, queries, docs))
    judged = {q.query_id for q in qrels if q.score > 0}
    grades = Counter(q.score for q in qrels)
    return [
        f"{folder}: BEIR set, {len(docs)} documents, {len(queries)} queries, {len(qrels)} qrels ({split})",
        f"  grades: {dict(sorted(grades.items()))}; {len(judged)} queries with a relevant document",
    ]


def _validate_records(path: Path, kind: Optional[str], bad) -> list[str]:
    from embforge.data.io import read_records

    kinds: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    langs: Counter[str] = Counter()
    for rec in read_records(path, kind=kind, bad=bad):
        kinds[rec.kind] += 1
        sources[rec.source or "(none)"] += 1
        langs[rec.lang or "(none)"] += 1
    return [
        f"{path}: {sum(kinds.values())} valid records",
        f"  kinds: {dict(kinds.most_common())}",
        f"  sources: {dict(sources.most_common(20))}",
        f"  langs: {dict(langs.most_common(20))}",
    ]


def validate_command(
    path: Path = typer.Argument(..., help="A record file (JSONL, .jsonl.gz, parquet) or a BEIR folder."),
    kind: Optional[str] = typer.Option(
        None, "--kind", help="Require one record kind: pair | scored_pair | triple | example."
    ),
    split: str = split_option("BEIR qrels split to check (qrels/<split>.tsv)."),
    all_errors: bool = typer.Option(
        False, "--all-errors", help="Go on after a bad line: list every one in PATH.bad.jsonl and count them."
    ),
) -> None:
    """Validate data: every line parsed and checked, counts by kind / source / language.

    Stops at the first bad line with its file, line number and the fix (exit code 2), or, with
    --all-errors, goes on, writes every bad line to PATH.bad.jsonl and exits with code 1 if
    any line was bad. Exit code 0: every line is valid.
    """
    from embforge.data.io import BadLines

    side = path.with_name(path.name.rstrip("/") + ".bad.jsonl")
    bad = BadLines(side) if all_errors else None
    try:
        if path.is_dir():
            lines = _validate_beir(path, split, bad)
        else:
            lines = _validate_records(path, kind, bad)
    finally:
        if bad is not None:
            bad.close()
    for line in lines:
        typer.echo(line)
    if bad is not None and bad.count:
        typer.echo(bad.summary(), err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_command)
