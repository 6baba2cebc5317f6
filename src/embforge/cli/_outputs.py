"""Output paths of CLI commands: checked before any work, removed when the command fails.

A command calls :func:`claim` on each output before loading a model or reading data: a
path that cannot be written (an existing file where a folder goes, an input of the same
command, ...) stops it at once with exit code 2. A folder it creates is removed again if
the command then fails, so a failed command leaves no empty or half-made folder behind
(``app.py`` calls :func:`finish` when the command ends).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

_CLAIMED: list[Path] = []


def claim(path: str | Path, *, directory: bool = False, inputs: Iterable[str | Path | None] = ()) -> None:
    """Check ``path`` (see :func:`embforge.data.io.check_output`); remember the folders it will create."""
    from embforge.data.io import check_output

    check_output(path, directory=directory, inputs=inputs)
    out = Path(path).absolute()
    missing = None  # the topmost folder on the way to the output that does not exist yet
    for folder in [out, *out.parents] if directory else list(out.parents):
        if folder.exists():
            break
        missing = folder
    if missing is not None:
        _CLAIMED.append(missing)


def succeeded() -> None:
    """The command finished: keep its outputs."""
    _CLAIMED.clear()


def finish() -> None:
    """Remove the folders claimed by a command that did not reach :func:`succeeded`."""
    while _CLAIMED:
        out = _CLAIMED.pop()
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out, ignore_errors=True)
