"""Streaming readers and atomic writers for JSONL, JSONL.gz, parquet and BEIR directories.

Readers are generators: they hold one line (JSONL) or one record batch (parquet) at a
time, so files larger than memory stream through. Malformed input raises
:class:`~embforge.errors.DataError` naming ``file:line``; with a :class:`BadLines` sink
(the CLI's ``--skip-bad``) the bad line is written to a side file with its error
instead, counted, and reading goes on. Nothing is dropped silently.

Writers go to a temporary file in the target directory and rename it into place when
complete, so a crash never leaves a half-written output under the final name.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from embforge.atomic import user_mode
from embforge.data.formats import (
    CorpusDoc,
    Qrel,
    Query,
    Record,
    parse_corpus_doc,
    parse_qrel_line,
    parse_query,
    parse_record,
)
from embforge.errors import DataError

__all__ = [
    "BadLines",
    "open_text",
    "atomic_write",
    "iter_rows",
    "read_records",
    "write_jsonl",
    "read_corpus",
    "read_queries",
    "read_qrels",
    "load_qrels",
    "write_beir",
    "count_rows",
    "loads_json",
    "check_strings",
    "read_error",
    "read_text_file",
    "check_output",
    "precheck_records",
    "tabular_not_jsonl",
    "jsonl_not_tabular",
    "max_line_bytes",
]

T = TypeVar("T")
logger = logging.getLogger("embforge")
PathLike = str | os.PathLike


class BadLines:
    """Side file for malformed input lines (the ``--skip-bad`` policy).

    Each bad line becomes one JSON line ``{"file", "line", "error", "raw"}`` in ``path``
    (created on the first bad line). ``count`` says how many were skipped.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with BadLines(os.path.join(d, "bad.jsonl")) as bad:
        ...     bad.add("in.jsonl", 3, "{oops", "bad JSON")
        >>> bad.count
        1
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.count = 0
        self._fh: IO[str] | None = None

    def add(self, file: PathLike, line: int, raw: Any, error: str) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
        if not isinstance(raw, str):
            raw = json.dumps(raw, ensure_ascii=False, default=str)
        rec = {"file": str(file), "line": line, "error": error, "raw": raw.rstrip("\r\n")}
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def summary(self) -> str:
        if not self.count:
            return "no bad lines"
        return f"skipped {self.count} bad line(s); written with their errors to {self.path}"

    def __enter__(self) -> BadLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_error(path: PathLike, exc: BaseException, lineno: int | None = None) -> DataError:
    """The DataError for a low-level read failure (bad gzip, truncated stream, non-UTF-8 bytes).

    One place turns every decoding exception of a reader into a one-line message naming the
    file (and the line when known) and the fix.
    """
    where = f"{path}:{lineno}" if lineno else str(path)
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{where}: not UTF-8 text (byte {exc.start}); re-encode the file as UTF-8")
    if isinstance(exc, gzip.BadGzipFile):
        return DataError(f"{path}: not a gzip file although its name ends in .gz; gzip it or rename it")
    if isinstance(exc, (EOFError, zlib.error)):
        return DataError(
            f"{where}: truncated or corrupt gzip data ({_brief(exc)}); re-download or re-compress the file"
        )
    return DataError(f"{where}: cannot read the file ({type(exc).__name__}: {_brief(exc)}); check the file")


def _brief(exc: BaseException, limit: int = 120) -> str:
    """An exception's text on one line, shortened (library messages can span lines)."""
    return " ".join(str(exc).split())[:limit]


_READ_ERRORS = (UnicodeDecodeError, EOFError, zlib.error, gzip.BadGzipFile)

LINE_LIMIT_ENV = "EMBFORGE_MAX_LINE_BYTES"
DEFAULT_MAX_LINE_BYTES = 32 * 2**20  # 32 MiB: far above any record a model can use (texts are cut
# to the model's length before tokenizing), far below what one line could cost in memory


def max_line_bytes() -> int:
    """The longest line a reader accepts (bytes; characters for text readers):
    ``$EMBFORGE_MAX_LINE_BYTES``, else 32 MiB. A longer line is refused before it is held whole,
    so one huge record costs at most about this much memory, never the line's size."""
    raw = os.environ.get(LINE_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_LINE_BYTES
    if not raw.isdigit() or int(raw) < 1:
        raise DataError(f"${LINE_LIMIT_ENV}={raw!r} must be a positive number of bytes; unset it for 32 MiB")
    return int(raw)


def _line_too_long(where: str, limit: int) -> DataError:
    return DataError(
        f"{where}: a line longer than {limit:,} bytes (the per-line limit); no record needs that much "
        "text (texts are cut to the model's length anyway): shorten or split the record, or raise "
        f"${LINE_LIMIT_ENV}"
    )


def _skip_rest(read: Callable[[int], Any]) -> None:
    """Consume the rest of an over-long line in bounded pieces (nothing of it is kept)."""
    while True:
        piece = read(1 << 20)
        if not piece or piece[-1:] in ("\n", b"\n"):
            return


class _CheckedText:
    """A text stream whose decoding errors become :class:`DataError` naming ``file:line``.

    Wraps what :func:`open_text` opens so every line reader (csv, readline, iteration) of
    the package reports a bad gzip stream or non-UTF-8 byte the same way.
    """

    def __init__(self, path: PathLike, fh: IO[str]) -> None:
        self._path, self._fh, self.lines = path, fh, 0

    def readline(self, *args: Any) -> str:
        """One line; a line over :func:`max_line_bytes` characters is a DataError (read in
        bounded pieces, never held whole) unless the caller passes its own size."""
        limit = None if args else max_line_bytes()
        try:
            line = self._fh.readline(*args) if limit is None else self._fh.readline(limit + 1)
            if limit is not None and len(line) > limit and not line.endswith("\n"):
                del line
                _skip_rest(self._fh.readline)
                raise _line_too_long(f"{self._path}:{self.lines + 1}", limit)
        except _READ_ERRORS as e:
            raise read_error(self._path, e, self.lines + 1) from None
        self.lines += 1 if line else 0
        return line

    def read(self, *args: Any) -> str:
        try:
            return self._fh.read(*args)
        except _READ_ERRORS as e:
            raise read_error(self._path, e) from None

    def __iter__(self) -> _CheckedText:
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _CheckedText:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_text(path: PathLike, mode: str = "r") -> IO[str]:
    """Open a text file, gzip-compressed if the name ends in ``.gz`` (UTF-8).

    In read mode, a bad gzip stream or a non-UTF-8 byte raises :class:`DataError` naming the
    file and line (see :func:`read_error`).
    """
    p = str(path)
    if p.endswith(".gz"):
        fh: IO[str] = io.TextIOWrapper(gzip.GzipFile(p, mode.replace("t", "") + "b"), encoding="utf-8", newline="")
    else:
        fh = open(p, mode, encoding="utf-8", newline="")
    if "r" not in mode:
        return fh
    return cast(IO[str], _CheckedText(path, fh))


def read_text_file(path: PathLike) -> str:
    """A whole UTF-8 text file (``.gz`` decompressed); read failures are a DataError naming it."""
    _check_exists(path)
    with open_text(path) as fh:
        return fh.read()


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def check_strings(obj: Any, where: str) -> None:
    """Raise DataError if any string (or key) in a decoded JSON value holds a lone surrogate.

    JSON allows ``"\\ud800"`` but such a string cannot be encoded as UTF-8, so a tokenizer or
    writer downstream would crash on it.
    """
    stack = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(
                    f"{where}: a string holds a lone UTF-16 surrogate ({v[:40]!r}); "
                    "fix the \\uD8xx-\\uDFxx escape in the file"
                ) from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def loads_json(text: str, where: str) -> Any:
    """``json.loads`` whose every failure is a :class:`DataError` naming ``where``.

    Covers invalid JSON, nesting too deep for the parser, integers beyond Python's digit
    limit and lone surrogate escapes.
    """
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: invalid JSON ({e.msg} at column {e.colno}); fix or remove the line") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read; flatten the record") from None
    except ValueError as e:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise DataError(f"{where}: unreadable JSON value ({_brief(e, 80)}); fix the value") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        check_strings(obj, where)
    return obj


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[IO[str]]:
    """Write a text file atomically: a temp file in the same directory, renamed on success.

    ``.gz`` names are gzip-compressed. On an exception the temp file is removed and the
    target is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, user_mode())  # mkstemp's 0600 would survive the rename
    finally:
        os.close(fd)
    try:
        if target.name.endswith(".gz"):
            opened: IO[str] = io.TextIOWrapper(gzip.open(tmp, "wb"), encoding="utf-8", newline="\n")
        else:
            opened = open(tmp, "w", encoding="utf-8", newline="\n")
        with opened as fh:
            yield fh
            fh.flush()
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_output(path: PathLike, *, directory: bool = False, inputs: Iterable[PathLike | None] = ()) -> None:
    """Refuse an output path before any work: an existing file where a folder goes (or the
    reverse), a file on the way to it, or an input of the same command (``mine X X``).

    Raises:
        DataError: naming the path and the fix (the CLI exits with code 2).
    """
    out = Path(path)
    for inp in inputs:
        if inp is not None and out.resolve() == Path(inp).resolve():
            raise DataError(f"{out}: the output is also an input of this command; write to another path")
    if directory and out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file, but the output is a folder; remove it or pick another path")
    if not directory and out.is_dir():
        raise DataError(f"{out}: is a folder, but the output is a file; pick a file name")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise DataError(f"{out}: {parent} is a file, so nothing can be written under it; pick another path")
            break


def precheck_records(
    path: PathLike, beir_split: str | None = None, corpus: PathLike | None = None
) -> None:
    """Read an input once, only to check it, before a command loads a model.

    A record file is parsed whole; a BEIR folder (with ``beir_split``) has its corpus,
    queries and qrels checked together (unknown or duplicate ids included). The first
    problem is a DataError naming file:line; nothing is kept in memory but the ids.
    """
    p = Path(path)
    if corpus is not None:
        for _lineno, obj in iter_rows(corpus):
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{corpus}:{_lineno}: every corpus line needs a 'text' string (BEIR layout)")
    if p.is_dir():
        if beir_split is None:
            return
        docs = {d.id for d in read_corpus(p / "corpus.jsonl")}
        queries = {q.id for q in read_queries(p / "queries.jsonl")}
        for _ in read_qrels(p / "qrels" / f"{beir_split}.tsv", None, queries, docs):
            pass
        return
    for _ in read_records(p):
        pass


def _is_parquet(path: PathLike) -> bool:
    return str(path).endswith((".parquet", ".pq"))


def _check_exists(path: PathLike) -> None:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file; check the path")


def _open_binary(path: PathLike) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def _lines(fh: io.BufferedIOBase, path: PathLike, bad: BadLines | None) -> Iterator[tuple[int, bytes]]:
    """``(number, raw line)``; a line over :func:`max_line_bytes` is refused (or, with ``bad``,
    skipped) while it streams, so memory stays bounded by the limit, not by the line."""
    limit = max_line_bytes()
    lineno = 0
    while raw := fh.readline(limit + 1):
        lineno += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            head = raw[:200].decode("utf-8", "replace")
            del raw
            _skip_rest(fh.readline)
            err = _line_too_long(f"{path}:{lineno}", limit)
            if bad is None:
                raise err
            bad.add(path, lineno, head + "...", str(err))
            continue
        yield lineno, raw


def _iter_jsonl(path: PathLike, bad: BadLines | None) -> Iterator[tuple[int, Any]]:
    """Lines are decoded one by one, so a non-UTF-8 line is reported with its number too."""
    lineno = 0
    try:
        with _open_binary(path) as fh:
            for lineno, raw in _lines(fh, path, bad):
                try:
                    line = raw.decode("utf-8")
                    if lineno == 1:
                        line = line.lstrip("\ufeff")  # a UTF-8 byte-order mark is not part of the record
                    if not line.strip():
                        continue
                    if "\t" in line and not line.lstrip().startswith(("{", "[")):
                        raise tabular_not_jsonl(path, lineno)
                    obj = loads_json(line, f"{path}:{lineno}")
                except UnicodeDecodeError as e:
                    if bad is None:
                        raise read_error(path, e, lineno) from None
                    bad.add(path, lineno, raw.decode("utf-8", "replace"), str(read_error(path, e, lineno)))
                    continue
                except DataError as e:
                    if bad is None:
                        raise
                    bad.add(path, lineno, raw.decode("utf-8", "replace"), str(e))
                    continue
                yield lineno, obj
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise read_error(path, e, lineno + 1) from None


def tabular_not_jsonl(path: PathLike, lineno: int) -> DataError:
    """A TSV/CSV file given where JSONL is expected: say so, and how to convert it."""
    return DataError(
        f"{path}:{lineno}: TAB-separated text, not JSON: this looks like a TSV file, but JSONL (one JSON "
        "object per line) is expected here; convert it first: `embforge convert sts FILE -o pairs.jsonl` "
        "for STS pairs, `embforge convert tatoeba` for bitext, or write one object per line such as "
        '{"query": "...", "positive": "..."} (a BEIR folder keeps only its qrels/<split>.tsv as TSV)'
    )


def jsonl_not_tabular(path: PathLike, lineno: int, expected: str) -> DataError:
    """A JSONL file given where a TSV/CSV file is expected: say so, and how to convert it."""
    return DataError(
        f"{path}:{lineno}: a JSON object, not {expected}: this looks like a JSONL file, but {expected} is "
        "expected here; give a .jsonl name where records are read (e.g. `embforge eval --sts pairs.jsonl` "
        "reads scored_pair records), or convert it: python -c \"import json,sys; "
        "[print(*json.loads(l).values(), sep='\\t') for l in open(sys.argv[1]) if l.strip()]\" FILE > FILE.tsv"
    )


def _iter_parquet(path: PathLike, batch_size: int) -> Iterator[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        pf = pq.ParquetFile(str(path))
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:  # a string column may hold non-UTF-8
        raise DataError(
            f"{path}: not a readable parquet file (after row {row}: {_brief(e)}); re-export it or use JSONL"
        ) from None


def iter_rows(
    path: PathLike, bad: BadLines | None = None, parquet_batch_size: int = 1024
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_or_row_number, decoded_object)`` from a JSONL, JSONL.gz or parquet file.

    Blank JSONL lines are skipped (they are not records). A generator: one line or one
    parquet record batch in memory at a time.
    """
    _check_exists(path)
    if _is_parquet(path):
        yield from _iter_parquet(path, parquet_batch_size)
    else:
        yield from _iter_jsonl(path, bad)


def _parsed(
    path: PathLike,
    parse: Callable[[Any, str], T],
    bad: BadLines | None,
    parquet_batch_size: int = 1024,
    key: Callable[[T], str] | None = None,
) -> Iterator[T]:
    """Parse each row; with ``key``, a repeated id is a DataError naming both lines."""
    seen: dict[str, int] = {}
    for lineno, obj in iter_rows(path, bad, parquet_batch_size):
        where = f"{path}:{lineno}"
        try:
            item = parse(obj, where)
            if key is not None:
                k = key(item)
                if k in seen:
                    raise DataError(
                        f"{where}: id {k!r} already used on line {seen[k]}; ids must be unique "
                        "(a repeated id would silently replace the first record); rename or drop one"
                    )
                seen[k] = lineno
        except DataError as e:
            if bad is None:
                raise
            bad.add(path, lineno, obj, str(e))
            continue
        yield item


def read_records(
    path: PathLike, kind: str | None = None, bad: BadLines | None = None, parquet_batch_size: int = 1024
) -> Iterator[Record]:
    """Stream typed training records (pair / scored_pair / triple / example) from a file.

    Args:
        path: ``.jsonl``, ``.jsonl.gz`` or ``.parquet``.
        kind: the expected kind; None = each line's kind is detected from its keys.
        bad: where to put malformed lines; None = raise on the first one.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "pairs.jsonl")
        >>> write_jsonl(p, [{"query": "q", "positive": "p"}])
        1
        >>> [r.positive for r in read_records(p)]
        ['p']
    """
    if str(path).lower().endswith((".tsv", ".csv", ".tsv.gz", ".csv.gz")):
        raise tabular_not_jsonl(path, 1)
    return _parsed(path, lambda o, w: parse_record(o, w, kind), bad, parquet_batch_size)


def _to_dict(rec: Any) -> dict:
    return rec if isinstance(rec, dict) else rec.to_dict()


def write_jsonl(path: PathLike, records: Iterable[Any]) -> int:
    """Atomically write records (dicts or objects with ``to_dict``) as JSONL; returns the count.

    Consumes ``records`` lazily (a generator streams straight to disk).
    """
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(json.dumps(_to_dict(rec), ensure_ascii=False) + "\n")
            n += 1
    return n


def count_rows(path: PathLike) -> int:
    """Number of non-blank lines (JSONL) or rows (parquet), read in a stream."""
    _check_exists(path)
    if _is_parquet(path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(str(path)).metadata.num_rows)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable parquet file ({_brief(e)}); re-export it") from None
    with open_text(path) as fh:
        return sum(1 for line in fh if line.strip())


# ----------------------------------------------------------------------------- BEIR


def read_corpus(path: PathLike, bad: BadLines | None = None) -> Iterator[CorpusDoc]:
    """Stream a BEIR ``corpus.jsonl`` (or parquet with the same columns).

    Document ids must be unique (a DataError names the second line). Documents with an
    empty title and text are kept (public collections have them; they never match) and
    counted in one warning when the file has been read.
    """
    empty = 0
    for doc in _parsed(path, parse_corpus_doc, bad, key=lambda d: d.id):
        empty += not (doc.text.strip() or doc.title.strip())
        yield doc
    if empty:
        logger.warning("%s: %d document(s) with empty title and text kept (they never match)", path, empty)


def read_queries(path: PathLike, bad: BadLines | None = None) -> Iterator[Query]:
    """Stream a BEIR ``queries.jsonl``; query ids must be unique."""
    return _parsed(path, parse_query, bad, key=lambda q: q.id)


def _qrels_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    _check_exists(path)
    with open_text(path) as fh:
        first = True
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or (lineno == 1 and _is_qrels_header(line)):
                continue
            if first and line.lstrip().startswith("{"):
                raise jsonl_not_tabular(path, lineno, "TAB-separated qrels (query-id, corpus-id, score)")
            first = False
            yield lineno, line


def _is_qrels_header(line: str) -> bool:
    """BEIR's ``query-id<TAB>corpus-id<TAB>score`` header (or a similar one naming a query column)."""
    parts = [p.strip().lower() for p in line.rstrip("\r\n").split("\t")]
    try:
        float(parts[-1])
        return False
    except ValueError:
        return len(parts) in (3, 4) and ("query" in parts[0] or parts[0] in ("qid", "q"))


def read_qrels(
    path: PathLike,
    bad: BadLines | None = None,
    query_ids: set[str] | None = None,
    doc_ids: set[str] | None = None,
) -> Iterator[Qrel]:
    """Stream a BEIR qrels TSV. A first line whose score column is not a number is a header.

    If ``query_ids`` / ``doc_ids`` are given, every qrel must reference a known id: a
    missing one is a DataError naming the qrels line (or a bad line with ``bad``).
    """
    for lineno, line in _qrels_lines(path):
        where = f"{path}:{lineno}"
        try:
            q = parse_qrel_line(line, where)
            if query_ids is not None and q.query_id not in query_ids:
                raise DataError(f"{where}: query-id {q.query_id!r} is not in the queries file; fix the id")
            if doc_ids is not None and q.doc_id not in doc_ids:
                raise DataError(f"{where}: corpus-id {q.doc_id!r} is not in the corpus; fix the id")
        except DataError as e:
            if bad is None:
                raise
            bad.add(path, lineno, line, str(e))
            continue
        yield q


def load_qrels(
    path: PathLike,
    query_ids: set[str] | None = None,
    doc_ids: set[str] | None = None,
    bad: BadLines | None = None,
) -> dict[str, dict[str, int]]:
    """Qrels as ``{query_id: {doc_id: grade}}`` (the pytrec_eval layout); see :func:`read_qrels`."""
    out: dict[str, dict[str, int]] = {}
    for q in read_qrels(path, bad, query_ids, doc_ids):
        out.setdefault(q.query_id, {})[q.doc_id] = q.score
    return out


def write_beir(
    out_dir: PathLike,
    corpus: Iterable[CorpusDoc],
    queries: Iterable[Query],
    qrels: Iterable[Qrel],
    split: str = "test",
) -> dict[str, int]:
    """Write a BEIR directory (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` with header).

    Each file is written atomically. Returns the counts written.
    """
    out = Path(out_dir)
    n_docs = write_jsonl(out / "corpus.jsonl", corpus)
    n_queries = write_jsonl(out / "queries.jsonl", queries)
    n_qrels = 0
    with atomic_write(out / "qrels" / f"{split}.tsv") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q in qrels:
            fh.write(f"{q.query_id}\t{q.doc_id}\t{q.score}\n")
            n_qrels += 1
    return {"docs": n_docs, "queries": n_queries, "qrels": n_qrels}
