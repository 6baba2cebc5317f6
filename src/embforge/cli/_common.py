"""The options every `embforge` command shares: one name, one short form, one default each.

docs/cli.md holds the table of this vocabulary and tests/unit/cli/test_cli_vocabulary.py walks
every command's parameters against it. A command takes the shared ones from here (with its own
help text where the meaning needs a word more), so a rename happens once.

Nothing heavy is imported here: `embforge --help` loads this module.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any, Optional

import typer

from embforge.errors import ConfigError

__all__ = [
    "BATCH_SIZE",
    "HEAD_CHOICES",
    "batch_size_option",
    "dtype_option",
    "heads_option",
    "lang_option",
    "languages_option",
    "max_length_option",
    "model_option",
    "output_option",
    "parse_heads",
    "progress_option",
    "resolve_heads",
    "set_threads",
    "show_progress",
    "split_list",
    "split_option",
    "threads_option",
    "truncation_summary",
]

BATCH_SIZE = 64
HEAD_CHOICES = ("dense", "sparse", "multivector")
DEFAULT_MODEL_HELP = "Model directory or hub id (embforge, BGE-M3 or sentence-transformers layout); default: the bundled all-MiniLM-L6-v2."


def model_option(help: str = DEFAULT_MODEL_HELP, required: bool = False) -> Any:
    """``-m/--model``: a model directory or hub id (None = the bundled all-MiniLM-L6-v2)."""
    return typer.Option(... if required else None, "--model", "-m", help=help)


def output_option(help: str, default: Any = ...) -> Any:
    """``-o/--output``: what the command writes (a file or a folder), required unless a default."""
    return typer.Option(default, "--output", "-o", help=help)


def heads_option(help: str = "") -> Any:
    """``--heads``: comma-separated heads, or ``auto`` (the heads the checkpoint has trained weights for)."""
    return typer.Option(
        "auto",
        "--heads",
        help=help
        or "Heads, comma-separated: dense, sparse, multivector; 'auto' = the heads the checkpoint "
        "has trained weights for (dense for a sentence-transformers model, all three for BGE-M3).",
    )


def batch_size_option(help: str = "Texts per forward pass.") -> Any:
    return typer.Option(BATCH_SIZE, "--batch-size", help=help)


def max_length_option(help: str = "Token limit per text (default: the model's).") -> Any:
    return typer.Option(None, "--max-length", help=help)


def threads_option() -> Any:
    return typer.Option(None, "--threads", help="torch CPU threads (default: torch's choice).")


def dtype_option(help: str = "Compute dtype: fp32, bf16 or fp16 autocast (outputs stay float32).") -> Any:
    return typer.Option("fp32", "--dtype", help=help)


def progress_option() -> Any:
    return typer.Option(
        None,
        "--progress/--no-progress",
        help="Progress bars (default: on when stderr is a terminal).",
        show_default=False,
    )


def split_option(help: str = "Qrels split of a BEIR folder (qrels/<split>.tsv).") -> Any:
    return typer.Option("test", "--split", help=help)


def lang_option(help: str = "Language tag written into every record.") -> Any:
    return typer.Option("", "--lang", "-l", help=help)


def languages_option(help: str = "Languages to use (repeat or comma-separate); default: all found.") -> Any:
    return typer.Option(None, "--languages", help=help)


def split_list(values: Optional[list[str]]) -> list[str]:
    """Repeated and comma-separated values as one list: ``["en,de", "es"]`` -> ``["en", "de", "es"]``."""
    return [x.strip() for v in values or [] for x in v.split(",") if x.strip()]


def parse_heads(heads: str) -> tuple[str, ...] | None:
    """``--heads`` -> a tuple of head names, or None for ``auto``; unknown names fail with the choices."""
    if heads.strip() in ("", "auto"):
        return None
    out = tuple(h.strip() for h in heads.split(",") if h.strip())
    for h in out:
        if h not in HEAD_CHOICES:
            raise ConfigError(f"--heads: unknown head {h!r}; choose from: auto, {', '.join(HEAD_CHOICES)}")
    return out


def resolve_heads(heads: str, model: str | None) -> tuple[str, ...]:
    """``--heads`` for ``model``: ``auto`` reads the checkpoint's trained heads (no model load)."""
    from embforge.model.checkpoint import trained_heads

    return parse_heads(heads) or trained_heads(model)


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU thread count (None keeps torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads {threads}: give a positive number of threads")
    import torch

    torch.set_num_threads(threads)


def show_progress(progress: bool | None) -> bool:
    """``--progress/--no-progress``; unset = only when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


class _TruncationCounter(logging.Filter):
    """Holds back each encode call's truncation warning and counts it (see ``truncation_summary``)."""

    def __init__(self) -> None:
        super().__init__()
        self.truncated: Counter[int] = Counter()  # max_length -> texts cut to it
        self.texts = 0
        self.model_limit = 0

    def filter(self, record: logging.LogRecord) -> bool:
        info = getattr(record, "embforge_truncated", None)
        if info is None:
            return True
        cut, n, limit, model_limit = info
        self.truncated[int(limit)] += int(cut)
        self.texts += int(n)
        self.model_limit = max(self.model_limit, int(model_limit))
        return False


@contextlib.contextmanager
def truncation_summary(logger_name: str = "embforge") -> Iterator[_TruncationCounter]:
    """One truncation warning per command: every encode call inside is counted, and one line with
    the total of truncated texts and the limit(s) is printed when the command ends."""
    logger = logging.getLogger(logger_name)
    counter = _TruncationCounter()
    logger.addFilter(counter)
    try:
        yield counter
    finally:
        logger.removeFilter(counter)
        total = sum(counter.truncated.values())
        if total:
            limits = ", ".join(f"{n} at max_length={lim}" for lim, n in sorted(counter.truncated.items()))
            logger.warning(
                "%d of %d texts encoded by this command were longer than the token limit and were truncated "
                "(%s); pass a larger --max-length (this model allows up to %d) to keep more.",
                total,
                counter.texts,
                limits,
                counter.model_limit,
            )
