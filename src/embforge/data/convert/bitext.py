"""Bitext converter: line-aligned files (Tatoeba ``tatoeba.xxx-eng.{xxx,eng}``) -> Pair.

Line i of the source file is the translation of line i of the target file. The pair's
``query`` is the non-English side and ``positive`` the English side, ``lang`` is
``"xxx-eng"``, ``id`` the line number.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from embforge.data.convert.tabular import fail_or_skip
from embforge.data.formats import Pair
from embforge.data.io import BadLines, open_text
from embforge.errors import DataError

__all__ = ["read_bitext", "find_tatoeba_pairs"]

_TATOEBA = re.compile(r"^tatoeba\.([a-z]{3})-([a-z]{3})\.([a-z]{3})$")


def read_bitext(
    src_path: str | os.PathLike,
    tgt_path: str | os.PathLike,
    lang: str = "",
    source: str = "",
    bad: BadLines | None = None,
) -> Iterator[Pair]:
    """Stream aligned pairs; unequal line counts are an error naming the shorter file."""
    for p in (src_path, tgt_path):
        if not os.path.isfile(p):
            raise DataError(f"{p}: no such file; check the path")
    with open_text(src_path) as fs, open_text(tgt_path) as ft:
        lineno = 0
        while True:
            a, b = fs.readline(), ft.readline()
            lineno += 1
            if not a and not b:
                return
            if not a or not b:
                short, other = (src_path, tgt_path) if not a else (tgt_path, src_path)
                raise DataError(
                    f"{short}:{lineno}: file ends before {other}; line-aligned bitext files "
                    "must have the same number of lines"
                )
            a, b = a.strip(), b.strip()
            if not a or not b:
                fail_or_skip(
                    bad, src_path, lineno, f"{a}\t{b}", f"{src_path}:{lineno}: empty sentence in bitext"
                )
                continue
            yield Pair(a, b, source=source, lang=lang, id=str(lineno))


def find_tatoeba_pairs(
    input_dir: str | os.PathLike, langs: list[str] | None = None
) -> list[tuple[str, Path, Path]]:
    """``(xxx, path_xxx, path_eng)`` for every ``tatoeba.xxx-eng.*`` pair in a folder (sorted)."""
    d = Path(input_dir)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory; give the folder holding tatoeba.xxx-eng.{{xxx,eng}} files")
    found: dict[str, tuple[Path, Path]] = {}
    for p in sorted(d.iterdir()):
        m = _TATOEBA.match(p.name)
        if m and m.group(3) == m.group(1):
            eng = d / f"tatoeba.{m.group(1)}-{m.group(2)}.{m.group(2)}"
            if not eng.is_file():
                raise DataError(f"{p}: its partner {eng.name} is missing")
            found[m.group(1)] = (p, eng)
    if langs:
        missing = sorted(set(langs) - set(found))
        if missing:
            raise DataError(f"{d}: no tatoeba files for {missing}; available: {', '.join(sorted(found))}")
        found = {k: v for k, v in found.items() if k in langs}
    if not found:
        raise DataError(f"{d}: no tatoeba.xxx-eng.xxx files found")
    return [(k, *v) for k, v in sorted(found.items())]
