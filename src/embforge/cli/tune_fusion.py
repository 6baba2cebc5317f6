"""`embforge tune-fusion`: choose the hybrid's fusion rule and weights on a dev split; write fusion.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    batch_size_option,
    heads_option,
    max_length_option,
    model_option,
    resolve_heads,
)
from embforge.errors import ConfigError

#: Below this many dev queries in all, the choice is noisy: on bench/quality.py's 14 dev sets the
#: coverage split was kept for 0, 2 and 3 of 3 training seeds at 350, 1,400 and 4,200 queries under
#: the paired-bootstrap rule of that time (bench/results/quality_full_eval*.md; docs/quality.md
#: section 7); its cross-validated gain, which decides now, is as noisy at that size.
FEW_DEV_QUERIES = 1000


def few_queries_note(n_queries: int) -> str | None:
    """A note for stderr when the dev split is small enough that its choice is noisy, else None."""
    if n_queries >= FEW_DEV_QUERIES:
        return None
    return (
        f"tune-fusion: {n_queries} dev queries in all; below about {FEW_DEV_QUERIES} the chosen fusion "
        "can change with the sample (docs/quality.md, section 7). Add dev queries if you have them."
    )


def register(app: typer.Typer) -> None:
    @app.command("tune-fusion")
    def tune_fusion_command(
        beir: list[Path] = typer.Argument(
            ...,
            help="BEIR directories whose --split qrels are the dev judgements; several (e.g. one per "
            "language) are scored by their mean nDCG@10.",
        ),
        model: str = model_option("Model directory; fusion.json is written into it.", required=True),
        split: str = typer.Option(
            "dev", "--split", help="Qrels split to tune on (never the split you report)."
        ),
        max_queries: Optional[int] = typer.Option(
            None, "--max-queries", help="Use only the first N judged queries."
        ),
        margin: float = typer.Option(
            0.01,
            "--min-gain",
            help="Keep the paper's weighted 1,0.3,1 unless the best point beats it by more than this "
            "(dev nDCG@10; 0.01 = the seed spread of a 100-query set).",
        ),
        heads: str = heads_option(),
        batch_size: int = batch_size_option(),
        max_length: Optional[int] = max_length_option(),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the choice, write nothing."),
    ) -> None:
        """Grid-search fusion (weighted, minmax, zscore, rrf) x weights on a dev split; write MODEL/fusion.json.

        eval, index, search and serve then use the model's fusion unless given --fusion / --weights.

        Example: embforge tune-fusion data/my-dev -m runs/m3/final --split dev
        """
        from embforge.eval.datasets import load_beir
        from embforge.eval.tune import score_matrices, tune_fusion_sets
        from embforge.model.encoder import Encoder
        from embforge.model.fusion import write_fusion

        folder = Path(model)
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            raise ConfigError(
                f"{model}: not a model directory (no config.json); give the folder `embforge train` wrote"
            )
        head_t = resolve_heads(heads, model)
        sets = [load_beir(b, split=split, max_queries=max_queries) for b in beir]
        enc = Encoder.from_pretrained(model, heads=head_t)
        for b, data in zip(beir, sets):
            typer.echo(
                f"tune-fusion: {b}: {len(data.query_ids)} {split} queries x {len(data.doc_ids)} documents",
                err=True,
            )
        few = few_queries_note(sum(len(d.query_ids) for d in sets))
        if few:
            typer.echo(few, err=True)
        dev = [(score_matrices(enc, d, head_t, batch_size, max_length), d) for d in sets]
        res = tune_fusion_sets(dev, margin=margin, tokenizer=getattr(enc, "tokenizer", None))
        res.chosen.tuned["dev"] = {
            "beir": str(beir[0]) if len(beir) == 1 else [str(b) for b in beir],
            "split": split,
            "max_queries": max_queries,
        }
        for row in res.table[:5]:
            w = ",".join(f"{v:g}" for v in row["weights"].values())
            typer.echo(f"  {row['fusion']:<8} {w:<12} nDCG@10 {row['ndcg@10']:.4f}")
        typer.echo(
            f"paper weighted 1,0.3,1: {res.default_ndcg:.4f}; best: {res.best['ndcg@10']:.4f} "
            f"-> {res.chosen.fusion} {dict(res.chosen.weights)} ({res.chosen.tuned['decision']})"
        )
        cov = res.chosen.tuned.get("low_coverage")
        if cov is not None:
            low = f", low-coverage queries {cov['low_weights']}" if "low_weights" in cov else ""
            cv = f", cross-validated gain {cov['cv_gain']:+.4f}" if "cv_gain" in cov else ""
            typer.echo(
                f"coverage split (<= {cov['max_chars_per_token']} chars/token, {cov['num_queries_low']} dev "
                f"queries): {cov['decision']}{low}{cv}"
            )
        if not dry_run:
            typer.echo(f"wrote {write_fusion(folder, res.chosen)}")
