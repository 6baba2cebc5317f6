"""Raw text for pretraining: plain text, JSONL, KLUE annotation files, SQuAD/XQuAD contexts.

:func:`read_texts` picks the reader from the file (or every file of a
directory) and returns non-empty, stripped texts in file order.

* ``*.txt``: one text per line.
* ``*.jsonl``: one object per line with a ``"text"`` field (or ``"contents"``,
  ``"document"``, ``"query"``).
* ``*.json`` in SQuAD format (XQuAD): the paragraph contexts (questions with ``questions=True``).
* ``*.tsv`` in the KLUE DP/NER layout: the sentence on each ``## klue-...<TAB>sentence`` line,
  with NER tags ``<word:TAG>`` stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from embforge.data.io import loads_json, open_text, read_text_file
from embforge.errors import DataError

__all__ = ["read_texts", "read_klue", "read_squad", "read_jsonl", "read_lines"]

_NER_TAG = re.compile(r"<([^<>:]+):[A-Z]{2,3}>")
_JSONL_FIELDS = ("text", "contents", "document", "query")


def read_klue(path: Path) -> Iterator[str]:
    """Sentences of a KLUE DP/NER dev/train file (the ``## klue-<id>\\t<sentence>`` lines)."""
    with open_text(path) as f:  # non-UTF-8 bytes: DataError naming file:line
        for line in f:
            if line.startswith("## klue") and "\t" in line:
                yield _NER_TAG.sub(r"\1", line.rstrip("\n").split("\t", 1)[1])


def read_squad(path: Path, questions: bool = False) -> Iterator[str]:
    """Paragraph contexts (or questions) of a SQuAD-format JSON file (XQuAD)."""
    root = loads_json(read_text_file(path), str(path))
    try:
        for article in root["data"]:
            for para in article["paragraphs"]:
                items = [qa["question"] for qa in para["qas"]] if questions else [para["context"]]
                for text in items:
                    if not isinstance(text, str):
                        raise TypeError(f"a text is a {type(text).__name__}")
                    yield text
    except (KeyError, TypeError, IndexError) as e:
        raise DataError(f"{path}: not a SQuAD-format JSON file ({e}); expected {{'data': [...]}}") from None


def read_jsonl(path: Path) -> Iterator[str]:
    """The text field of each line of a JSONL file."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = loads_json(line, f"{path}:{n}")  # DataError: bad JSON, too deep, lone surrogate
            for key in _JSONL_FIELDS:
                if isinstance(rec, dict) and isinstance(rec.get(key), str):
                    yield rec[key]
                    break
            else:
                raise DataError(
                    f"{path}:{n}: no text field; each line needs one of {', '.join(_JSONL_FIELDS)} (a string)"
                )


def read_lines(path: Path) -> Iterator[str]:
    with open_text(path) as f:
        yield from f


def _read_file(path: Path, questions: bool) -> Iterator[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_squad(path, questions=questions)
    if suffix == ".tsv" and path.name.startswith("klue"):
        return read_klue(path)
    if suffix in {".txt", ".tsv", ""}:
        return read_lines(path)
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .txt, .jsonl, SQuAD .json or KLUE .tsv")


def read_texts(
    *paths: str | Path, questions: bool = False, limit: int | None = None, min_chars: int = 1
) -> list[str]:
    """Texts of the given files and directories.

    A directory means its supported files, sorted by name, without README/LICENSE files.

    Args:
        paths: files or directories.
        questions: for SQuAD files, read the questions instead of the contexts.
        limit: stop after this many texts.
        min_chars: skip texts shorter than this after stripping.

    Raises:
        DataError: a path does not exist, or nothing was read.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in {".txt", ".jsonl", ".json", ".tsv"}
                and not f.name.lower().startswith(("readme", "license"))
            )
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or directory (give text/JSONL/SQuAD/KLUE files or a folder)")
    texts: list[str] = []
    for f in files:
        for t in _read_file(f, questions):
            t = t.strip()
            if len(t) >= min_chars:
                texts.append(t)
                if limit is not None and len(texts) >= limit:
                    return texts
    if not texts:
        raise DataError(f"no texts read from {', '.join(map(str, paths))}; are the files empty?")
    return texts
