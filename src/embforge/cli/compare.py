"""`embforge compare`: several report.json files side by side (table with changes, bar plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import output_option
from embforge.errors import ConfigError, DataError


def compare_command(
    reports: list[Path] = typer.Argument(
        ..., help="report.json files (or folders holding one) written by `embforge eval` or `embforge demo`."
    ),
    output: Path = output_option(
        "Folder for the combined report.json, report.md and plots.", Path("runs/compare")
    ),
    name: Optional[list[str]] = typer.Option(
        None, "--name", help="Label of each report (repeat, same order); default: the report's folder name."
    ),
    plots: bool = typer.Option(True, help="Write PNG plots next to report.md."),
) -> None:
    """Put evaluation reports side by side: one table with every model's numbers and the change
    against the first, and bar plots with one colour per model (values with 3 decimals).

    Example: embforge compare runs/base/report.json runs/tuned/report.json -o runs/compare
    """
    import json

    from embforge.eval.report import format_comparison, merge_reports, unique_labels, write_report

    files = [p / "report.json" if p.is_dir() else p for p in reports]
    loaded = []
    for f in files:
        if not f.is_file():
            raise DataError(
                f"report {str(f)!r} does not exist; give a report.json written by `embforge eval`"
            )
        try:
            loaded.append(json.loads(f.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise DataError(f"{f}:{e.lineno}: not a JSON report ({e.msg})") from None
        if not isinstance(loaded[-1], dict) or not isinstance(loaded[-1].get("runs"), dict):
            raise DataError(f"{f}: no 'runs' object; give a report.json written by `embforge eval`")
    names = list(name or [])
    if names and len(names) != len(files):
        raise ConfigError(f"--name given {len(names)} times for {len(files)} reports: give one per report")
    labels = names or unique_labels(
        [f.resolve().parent.name for f in files], [str(f.resolve().parent) for f in files]
    )
    command = "embforge compare " + " ".join(str(f) for f in files)
    report = merge_reports(loaded, labels, command)
    typer.echo(format_comparison(report))
    written = write_report(report, output, plots=plots)
    typer.echo(f"wrote {written['json']} and {written['md']}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
