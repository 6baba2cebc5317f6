"""`embforge train CONFIG [key=value ...]`: run a training recipe from a YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
import yaml

from embforge.cli._common import progress_option, show_progress


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        config: Path = typer.Argument(
            ..., help="YAML recipe, e.g. configs/m3-finetune.yaml (its 'recipe:' key picks what runs)."
        ),
        overrides: Optional[list[str]] = typer.Argument(
            None,
            help="Dotted overrides applied over the file, e.g. loop.batch_size=64 optim.lr=1e-5 "
            "model.path=./my-model. Values are read as YAML ([256], null, true).",
        ),
        check: bool = typer.Option(
            False, "--check", help="Only load and validate the config, print it, and exit."
        ),
        progress: Optional[bool] = progress_option(),
    ) -> None:
        """Train a model from a recipe. Resumes from OUTPUT_DIR/checkpoints when present.

        Multi-process: torchrun --nproc_per_node 2 -m embforge.cli.app train CONFIG ...
        """
        # imported here, not at the top: the recipes pull in torch and transformers, which
        # `embforge --help` and the other subcommands must not pay for
        from embforge.config import config_to_dict
        from embforge.train.recipes import load_config

        overrides = list(overrides or [])
        if not any(o.startswith("loop.progress=") for o in overrides):
            # --progress/--no-progress, else the bar only on a terminal (a config's own value is kept
            # when stderr is a terminal)
            if progress is not None or not show_progress(None):
                overrides.append(f"loop.progress={str(show_progress(progress)).lower()}")
        recipe, cfg = load_config(config, overrides)
        if check:
            typer.echo(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            typer.echo(f"ok: {config} is a valid '{recipe.name}' config")
            return
        result = recipe.run(cfg)
        out = getattr(result, "output_dir", None)
        log = getattr(result, "log", None)
        if out is not None:
            last = f", final loss {log[-1]['loss']:.4f}" if log else ""
            typer.echo(
                f"done: {getattr(result, 'steps', '?')} steps{last}; model in {Path(out) / 'final'}, "
                f"log in {Path(out) / 'log.jsonl'}"
            )
