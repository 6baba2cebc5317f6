"""STS converters: STS-B TSV, KorSTS TSV (header) and stsb_multi_mt CSV -> ScoredPair.

Layouts:
    ``stsb``: TAB-separated ``genre, file, year, id, score, s1, s2`` with no header; some
        lines carry 2 extra source columns and quotes are unbalanced, so rows are read
        with ``QUOTE_NONE`` and columns 0-6 are kept.
    ``korsts``: the same 7 columns with a header line (``genre filename year id score
        sentence1 sentence2``).
    ``csv``: stsb_multi_mt, comma-separated with standard quoting, no header:
        ``sentence1, sentence2, score``.

Scores stay on the 0-5 scale of the source.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator

from embforge.data.convert.tabular import fail_or_skip, iter_delimited
from embforge.data.formats import ScoredPair
from embforge.data.io import BadLines, open_text
from embforge.errors import DataError

__all__ = ["STS_FORMATS", "detect_sts_format", "read_sts"]

STS_FORMATS = ("stsb", "korsts", "csv")


def detect_sts_format(path: str | os.PathLike) -> str:
    """Guess the layout from the first line (header -> korsts, >= 7 TABs fields -> stsb, else csv)."""
    with open_text(path) as fh:
        first = fh.readline()
    fields = first.rstrip("\r\n").split("\t")
    if len(fields) >= 7:
        return "korsts" if fields[4].strip().lower() == "score" else "stsb"
    return "csv"


def _score(raw: str) -> float | None:
    try:
        s = float(raw)
    except ValueError:
        return None
    return s if math.isfinite(s) else None


def read_sts(
    path: str | os.PathLike,
    fmt: str = "auto",
    lang: str = "",
    source: str = "",
    bad: BadLines | None = None,
) -> Iterator[ScoredPair]:
    """Stream scored pairs from an STS file.

    Args:
        path: the file.
        fmt: ``stsb``, ``korsts``, ``csv`` or ``auto`` (see :func:`detect_sts_format`).
        lang, source: copied onto every record.
        bad: BadLines sink for ``--skip-bad``; None raises on the first bad row.
    """
    if fmt == "auto":
        fmt = detect_sts_format(path)
    if fmt not in STS_FORMATS:
        raise DataError(f"unknown STS format {fmt!r}; choose from: auto, {', '.join(STS_FORMATS)}")
    if fmt == "csv":
        rows = iter_delimited(path, ",")
        cols, need = (0, 1, 2), 3
    else:
        rows = iter_delimited(path, "\t", csv.QUOTE_NONE, skip_header=fmt == "korsts")
        cols, need = (5, 6, 4), 7
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        if len(row) < need:
            fail_or_skip(bad, path, lineno, row, f"{where}: {fmt} row needs {need} columns, got {len(row)}")
            continue
        s1, s2, raw = (row[c].strip() for c in cols)
        score = _score(raw)
        if score is None or not 0.0 <= score <= 5.0:
            fail_or_skip(bad, path, lineno, row, f"{where}: STS score {raw!r} is not a number in [0, 5]")
            continue
        if not s1 or not s2:
            fail_or_skip(bad, path, lineno, row, f"{where}: empty sentence in an STS pair")
            continue
        yield ScoredPair(s1, s2, score, source=source, lang=lang, id=f"{lineno}")
