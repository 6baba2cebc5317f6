"""`embforge demo`: the quickstart on bundled data and the bundled model (no downloads)."""

from __future__ import annotations

from typing import Optional

import typer

from embforge.cli._common import (
    languages_option,
    model_option,
    output_option,
    progress_option,
    set_threads,
    show_progress,
    split_list,
    threads_option,
)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        model: Optional[str] = model_option(
            "Base model directory or hub id (default: the bundled all-MiniLM-L6-v2)."
        ),
        output: str = output_option("Output directory (mined data, model, index, report).", "demo_out"),
        languages: Optional[list[str]] = languages_option(
            "Bundled XQuAD languages (repeat or comma-separate): en, de, es; default all."
        ),
        steps: int = typer.Option(40, help="Fine-tuning steps (M3 recipe + Matryoshka)."),
        train_batch_size: int = typer.Option(16, help="Queries per fine-tuning step."),
        max_eval_queries: Optional[int] = typer.Option(
            None, help="Held-apart questions per language (default all 296)."
        ),
        max_train_queries: Optional[int] = typer.Option(
            None, help="Training questions per language (default all 894)."
        ),
        threads: Optional[int] = threads_option(),
        progress: Optional[bool] = progress_option(),
        quick: bool = typer.Option(
            False, "--quick", help="Only encode + search the English set with every head (no training)."
        ),
        max_queries: int = typer.Option(
            200, "--max-queries", help="--quick: how many bundled questions to search with."
        ),
    ) -> None:
        """The quickstart: evaluate, mine negatives, fine-tune (M3), evaluate again, index, search, report.

        Evaluates the bundled model (dense, sparse, multi-vector, hybrid, BM25) on held-apart XQuAD
        questions, mines hard negatives (TopK-PercPos), fine-tunes with the M3 recipe + Matryoshka,
        evaluates again, builds a hybrid index, runs example searches, prints a before/after table
        and writes demo_out/report/report.md with plots. Sized for a 2-core CPU (docs/eval.md)."""
        from embforge.model.encode import set_progress_default

        set_progress_default(show_progress(progress))
        if quick:
            from embforge.demo import run_demo

            set_threads(threads)
            run_demo(model, max_queries=max_queries, echo=typer.echo)
            return
        from embforge.errors import ConfigError
        from embforge.quickstart import DEMO_ROOT, QuickstartConfig, run_quickstart

        have = sorted(p.name.split("-", 1)[1] for p in DEMO_ROOT.glob("xquad-*"))
        langs = tuple(split_list(languages) or have)
        bad = [x for x in langs if x not in have]
        if bad:
            raise ConfigError(f"--languages {','.join(bad)}: not bundled; choose from: {', '.join(have)}")
        cfg = QuickstartConfig(
            model=model,
            languages=langs,
            out_dir=output,
            steps=steps,
            batch_size=train_batch_size,
            max_eval_queries=max_eval_queries,
            max_train_queries=max_train_queries,
            threads=threads,
            progress=show_progress(progress),
        )
        run_quickstart(cfg, echo=typer.echo)
