"""Line-numbered streaming reads of TSV/CSV and plain line files."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from typing import Literal

from embforge.data.io import BadLines, jsonl_not_tabular, open_text
from embforge.errors import DataError

__all__ = ["iter_delimited", "fail_or_skip"]


def iter_delimited(
    path: str | os.PathLike,
    delimiter: str,
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL,
    skip_header: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)``; the number is the row's first physical line (1-based).

    ``quoting=csv.QUOTE_NONE`` treats quote characters as text (STS-B and KorNLI need it:
    their sentences contain unbalanced quotes).
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; check the path")
    with open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
        start, first = 1, True
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise DataError(
                    f"{path}: not UTF-8 text at or after line {start}; re-encode the file as UTF-8"
                ) from None
            except csv.Error as e:
                raise DataError(f"{path}:{start}: malformed {delimiter!r}-separated row ({e})") from None
            lineno, start = start, reader.line_num + 1
            if skip_header and lineno == 1:
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if first and row[0].lstrip().startswith("{") and delimiter.join(row).rstrip().endswith("}"):
                raise jsonl_not_tabular(path, lineno, "TAB-separated" if delimiter == "\t" else "CSV")
            first = False
            yield lineno, row


def fail_or_skip(bad: BadLines | None, path: str | os.PathLike, lineno: int, raw: object, msg: str) -> None:
    """Raise ``DataError(msg)`` or, with a BadLines sink, record the line and return."""
    if bad is None:
        raise DataError(msg)
    text = (
        raw
        if isinstance(raw, str)
        else "\t".join(map(str, raw))
        if isinstance(raw, (list, tuple))
        else str(raw)
    )
    bad.add(path, lineno, text, msg)
