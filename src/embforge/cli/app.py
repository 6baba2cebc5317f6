"""`embforge` entry point.

Every module ``embforge.cli.<name>`` that defines ``register(app: typer.Typer)``
adds its subcommand(s); adding a command never edits this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import embforge.cli as _pkg
from embforge.cli import _outputs
from embforge.cli._common import truncation_summary


def _succeeded(*_: object, **__: object) -> None:
    _outputs.succeeded()


app = typer.Typer(
    result_callback=_succeeded,
    name="embforge",
    help="Multilingual dense, sparse and multi-vector embeddings: encode, train, index, search, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags show as flags, not as `--flag <bool>`
)


def _load_commands() -> None:
    for info in sorted(pkgutil.iter_modules(_pkg.__path__), key=lambda m: m.name):
        if info.name in {"app"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"embforge.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


def _print_version(value: bool) -> None:
    if value:
        from embforge import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the embforge version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
) -> None:
    """embforge: encode, train, index, search, evaluate and serve text embeddings."""
    ctx.call_on_close(_outputs.finish)  # a failed command leaves no output folder it created
    if ctx.invoked_subcommand != "serve":  # a server runs until stopped: its requests warn as they come
        ctx.with_resource(truncation_summary())  # one truncation warning per command, with the total


@app.command("version")
def version() -> None:
    """Print the embforge version."""
    from embforge import __version__

    typer.echo(__version__)


_load_commands()


def main() -> None:
    """Console-script entry: user errors print one clear line, exit code 2."""
    from embforge.errors import EmbforgeError

    try:
        app()
    except EmbforgeError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
