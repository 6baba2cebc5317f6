"""`embforge demo`: the quickstart on bundled data and the bundled model (no downloads)."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        model: Optional[str] = typer.Option(
            None, "--model", "-m", help="Model directory or hub id (default: bundled all-MiniLM-L6-v2)."
        ),
        queries: int = typer.Option(200, "--queries", help="How many bundled questions to search with."),
    ) -> None:
        """Encode a bundled corpus (XQuAD English paragraphs), search it with the dense, sparse,
        multi-vector heads and their hybrid, and print accuracy@1 / MRR@10 and example hits."""
        from embforge.demo import run_demo

        run_demo(model, max_queries=queries, echo=typer.echo)
