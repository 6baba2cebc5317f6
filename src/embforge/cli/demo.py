"""`embforge demo`: the quickstart on bundled data and the bundled model (no downloads)."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        model: Optional[str] = typer.Option(
            None, "--model", "-m", help="Base model directory or hub id (default: bundled all-MiniLM-L6-v2)."
        ),
        out: str = typer.Option(
            "demo_out", "--out", "-o", help="Output directory (mined data, model, index, report)."
        ),
        languages: str = typer.Option(
            "en,de,es", help="Bundled XQuAD languages, comma-separated (en, de, es)."
        ),
        steps: int = typer.Option(40, help="Fine-tuning steps (M3 recipe + Matryoshka)."),
        batch_size: int = typer.Option(16, help="Queries per fine-tuning step."),
        max_eval_queries: Optional[int] = typer.Option(
            None, help="Held-apart questions per language (default all 296)."
        ),
        max_train_queries: Optional[int] = typer.Option(
            None, help="Training questions per language (default all 894)."
        ),
        threads: Optional[int] = typer.Option(None, help="torch threads (default: torch's choice)."),
        quick: bool = typer.Option(
            False, "--quick", help="Only encode + search the English set with every head (no training)."
        ),
        queries: int = typer.Option(
            200, "--queries", help="--quick: how many bundled questions to search with."
        ),
    ) -> None:
        """The quickstart: evaluate, mine negatives, fine-tune (M3), evaluate again, index, search, report.

        Evaluates the bundled model (dense, sparse, multi-vector, hybrid, BM25) on held-apart XQuAD
        questions, mines hard negatives (TopK-PercPos), fine-tunes with the M3 recipe + Matryoshka,
        evaluates again, builds a hybrid index, runs example searches, prints a before/after table
        and writes demo_out/report/report.md with plots. Sized for a 2-core CPU (docs/eval.md)."""
        if quick:
            from embforge.demo import run_demo

            run_demo(model, max_queries=queries, echo=typer.echo)
            return
        from embforge.errors import ConfigError
        from embforge.quickstart import DEMO_ROOT, QuickstartConfig, run_quickstart

        langs = tuple(x.strip() for x in languages.split(",") if x.strip())
        have = sorted(p.name.split("-", 1)[1] for p in DEMO_ROOT.glob("xquad-*"))
        bad = [x for x in langs if x not in have]
        if bad or not langs:
            raise ConfigError(f"--languages {languages!r}: choose from: {', '.join(have)}")
        cfg = QuickstartConfig(
            model=model,
            languages=langs,
            out_dir=out,
            steps=steps,
            batch_size=batch_size,
            max_eval_queries=max_eval_queries,
            max_train_queries=max_train_queries,
            threads=threads,
        )
        run_quickstart(cfg, echo=typer.echo)
