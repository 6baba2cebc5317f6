"""Sharded corpus embeddings on disk: parquet shards plus a manifest, written to survive kill -9.

A sharded encoding job (``embforge encode CORPUS -o OUT/``) cuts the input into shards of
``shard_size`` consecutive records: shard ``i`` holds records ``[i*S, (i+1)*S)``, whoever
encodes it. Each shard is one parquet file ``shard-000042.parquet`` with the columns

* ``id`` (string), ``title``, ``text`` (strings: the payload an index stores next to the vectors);
* ``dense``: fixed-size list of float32 (D);
* ``sparse_indices`` (list of int32 token ids) and ``sparse_values`` (list of float32 weights);
* ``multivector``: list of fixed-size lists of float16 (T_i token vectors of size M);

holding only the columns of the heads that were encoded. A shard is written to a temporary
file, fsynced and renamed into place, so a shard file that exists is complete: a re-run skips
it, and a job killed at any moment resumes with nothing lost or written twice. ``job.json``
(written first) records what the shards are made of, so a re-run with another model or other
options is refused instead of mixing outputs; ``manifest.json`` (written last, by whichever
process finds every shard present) lists the shards and their row counts.

Readers stream one shard at a time (:func:`iter_shards`), so memory does not grow with the corpus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embforge.atomic import atomic_write_text
from embforge.data.io import iter_rows, loads_json
from embforge.errors import DataError
from embforge.types import Embeddings, SparseVectors

__all__ = [
    "SHARD_FORMAT",
    "MANIFEST",
    "JOB",
    "CorpusRow",
    "Shard",
    "shard_name",
    "iter_corpus_rows",
    "embeddings_table",
    "write_shard",
    "read_shard",
    "shard_rows",
    "check_job",
    "finalize",
    "read_manifest",
    "iter_shards",
    "is_shard_dir",
]

SHARD_FORMAT = "embforge-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
JOB = "job.json"
_TMP = ".tmp-"


@dataclass(frozen=True)
class CorpusRow:
    """One input record: its id, title and text (``title + " " + text`` is what gets encoded)."""

    id: str
    title: str
    text: str

    @property
    def passage(self) -> str:
        """The text to encode: ``title text`` when there is a title (as BEIR evaluation and `embforge index`)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True)
class Shard:
    """The rows of one shard read back: ids, payload and the encoded heads."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    embeddings: Embeddings


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.parquet"


def _resolve_input(path: Path) -> Path:
    if path.is_dir():
        found = [
            path / n for n in ("corpus.jsonl", "corpus.jsonl.gz", "corpus.parquet") if (path / n).exists()
        ]
        if not found:
            raise DataError(
                f"{path}: no corpus.jsonl; a BEIR directory holds corpus.jsonl (+ queries.jsonl, qrels/)"
            )
        return found[0]
    if not path.is_file():
        raise DataError(
            f"corpus {str(path)!r} does not exist; pass a .jsonl, .parquet, text file or BEIR directory"
        )
    return path


def _row(rec: Any, n: int, where: str, field: str) -> CorpusRow:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object with a {field!r} field, got {str(rec)[:80]!r}")
    text, title = rec.get(field), rec.get("title") or ""
    if text is None and title:
        text = ""
    if not isinstance(text, str) or not isinstance(title, str) or not (text.strip() or title.strip()):
        raise DataError(
            f"{where}: needs a non-empty string field {field!r} (or a title); got {str(rec)[:80]!r}; "
            "fix the record or pick the field with --text-field"
        )
    return CorpusRow(str(rec.get("_id", rec.get("id", n))), title, text)


def iter_corpus_rows(path: str | os.PathLike, text_field: str = "text") -> Iterator[CorpusRow]:
    """Stream the records of a corpus: BEIR directory, ``.jsonl(.gz)``, ``.parquet`` or a text file
    (one text per non-empty line, ids = line numbers). One record in memory at a time."""
    p = _resolve_input(Path(path))
    name = p.name
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".ndjson", ".parquet", ".pq")):
        for n, rec in iter_rows(p):
            yield _row(rec, n, f"{p}:{n}", text_field)
        return
    import gzip

    with gzip.open(p, "rb") if name.endswith(".gz") else open(p, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                row = _line_row(p, n, raw, text_field)
            except UnicodeDecodeError:
                raise DataError(f"{p}:{n}: not UTF-8 text; fix the line") from None
            if row is not None:
                yield row


def _line_row(path: Path, n: int, raw: bytes, text_field: str) -> CorpusRow | None:
    """The record of one input line (None for a blank line), as :func:`iter_corpus_rows` reads it."""
    line = raw.decode("utf-8", "strict") if raw else ""
    if n == 1:
        line = line.lstrip("\ufeff")
    if not line.strip():
        return None
    if path.name.endswith((".jsonl", ".json", ".ndjson")):
        return _row(loads_json(line, f"{path}:{n}"), n, f"{path}:{n}", text_field)
    return CorpusRow(str(n), "", line.rstrip("\r\n"))


def shard_offsets(path: str | os.PathLike, shard_size: int) -> list[tuple[int, int, int]]:
    """(byte offset, line number, records) where each shard starts in an uncompressed JSONL or text
    corpus: one fast pass, a few integers per shard, so a worker can seek to its own shard."""
    p = _resolve_input(Path(path))
    if p.name.endswith((".gz", ".parquet", ".pq")):
        raise DataError(
            f"{p}: --engine ray reads uncompressed .jsonl or text corpora; decompress it or use torchrun"
        )
    out: list[tuple[int, int, int]] = []
    count, offset = 0, 0
    with open(p, "rb") as f:
        for n, raw in enumerate(f, 1):
            if raw.strip():
                if count % shard_size == 0:
                    out.append((offset, n, 0))
                count += 1
                o, ln, c = out[-1]
                out[-1] = (o, ln, c + 1)
            offset += len(raw)
    return out


def read_rows_at(
    path: str | os.PathLike, offset: int, line: int, count: int, text_field: str = "text"
) -> list[CorpusRow]:
    """``count`` records starting at byte ``offset`` (line ``line``) of a corpus (see :func:`shard_offsets`)."""
    p = _resolve_input(Path(path))
    rows: list[CorpusRow] = []
    with open(p, "rb") as f:
        f.seek(offset)
        n = line
        while len(rows) < count:
            raw = f.readline()
            if not raw:
                raise DataError(f"{p}: ends before line {n}; the file changed since the encode started")
            try:
                row = _line_row(p, n, raw, text_field)
            except UnicodeDecodeError:
                raise DataError(f"{p}:{n}: not UTF-8 text; fix the line") from None
            if row is not None:
                rows.append(row)
            n += 1
    return rows


def embeddings_table(rows: Sequence[CorpusRow], emb: Embeddings) -> Any:
    """A pyarrow table of one shard (columns: see the module docstring)."""
    import pyarrow as pa

    cols: dict[str, Any] = {
        "id": pa.array([r.id for r in rows], pa.string()),
        "title": pa.array([r.title for r in rows], pa.string()),
        "text": pa.array([r.text for r in rows], pa.string()),
    }
    if emb.dense is not None:
        d = np.ascontiguousarray(emb.dense, np.float32)
        cols["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(d.ravel()), d.shape[1])
    if emb.sparse is not None:
        sp = emb.sparse
        offsets = pa.array(np.asarray(sp.indptr, np.int64), pa.int64())
        cols["sparse_indices"] = pa.LargeListArray.from_arrays(
            offsets, pa.array(np.asarray(sp.indices, np.int32))
        )
        cols["sparse_values"] = pa.LargeListArray.from_arrays(
            offsets, pa.array(np.asarray(sp.values, np.float32))
        )
    if emb.multivector is not None:
        m = emb.multivector[0].shape[1] if emb.multivector else 0
        lens = np.array([len(x) for x in emb.multivector], np.int64)
        flat = (
            np.concatenate(emb.multivector).astype(np.float16) if len(lens) else np.zeros((0, m), np.float16)
        )
        tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), m)
        cols["multivector"] = pa.LargeListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(lens)])), tokens
        )
    meta = {"format": SHARD_FORMAT, "version": str(FORMAT_VERSION)}
    if emb.sparse is not None:
        meta["vocab_size"] = str(emb.sparse.vocab_size)
    return pa.table(cols).replace_schema_metadata(meta)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(path: str | os.PathLike, table: Any) -> None:
    """Write ``table`` to ``path`` atomically: a temporary file, fsync, rename, fsync of the folder."""
    import pyarrow.parquet as pq

    target = Path(path)
    tmp = target.with_name(f".{target.name}{_TMP}{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def remove_stale_temps(out: Path, shards: Iterable[int]) -> None:
    """Remove temporary files a killed process left for ``shards`` (never a finished shard)."""
    for i in shards:
        for t in out.glob(f".{shard_name(i)}{_TMP}*"):
            t.unlink(missing_ok=True)


def shard_rows(path: str | os.PathLike) -> int | None:
    """Rows of a finished shard from its parquet footer; None when it is missing or unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(str(path)).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None


def _list_values(col: Any) -> tuple[np.ndarray, Any]:
    """(offsets, flat values) of a (large) list column, one chunk."""
    arr = col.combine_chunks()
    offsets = np.asarray(arr.offsets, np.int64)
    values = arr.values
    return offsets - offsets[0], values


def _table_embeddings(table: Any, vocab_size: int) -> Embeddings:
    names = set(table.column_names)
    dense = sparse = multivector = None
    n = table.num_rows
    if "dense" in names:
        arr = table.column("dense").combine_chunks()
        dim = arr.type.list_size
        dense = np.asarray(arr.flatten(), np.float32).reshape(n, dim)
    if "sparse_indices" in names:
        indptr, idx = _list_values(table.column("sparse_indices"))
        _, val = _list_values(table.column("sparse_values"))
        sparse = SparseVectors(indptr, np.asarray(idx, np.int32), np.asarray(val, np.float32), vocab_size)
    if "multivector" in names:
        offsets, tokens = _list_values(table.column("multivector"))
        flat = np.asarray(tokens.flatten(), np.float16).reshape(-1, tokens.type.list_size).astype(np.float32)
        multivector = [flat[offsets[i] : offsets[i + 1]] for i in range(n)]
    return Embeddings(dense=dense, sparse=sparse, multivector=multivector)


def read_shard(path: str | os.PathLike, heads: Sequence[str] | None = None, payload: bool = True) -> Shard:
    """Read one shard; ``heads`` limits the vector columns read (None: all), ``payload=False`` skips
    title/text. Multi-vector tokens come back as float32 (stored float16)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ["id"] + (["title", "text"] if payload else [])
    want = {"dense": ["dense"], "sparse": ["sparse_indices", "sparse_values"], "multivector": ["multivector"]}
    try:
        schema = pq.read_schema(str(path))
        have = set(schema.names)
        for h in heads if heads is not None else list(want):
            if want[h][0] in have:
                cols += want[h]
            elif heads is not None:
                raise DataError(f"{path}: the shard has no {h!r} head; encode with --heads ...,{h}")
        table = pq.read_table(str(path), columns=cols)
    except (OSError, pa.ArrowException) as e:
        raise DataError(
            f"{path}: not a readable shard ({str(e)[:120]}); delete it and re-run the encode"
        ) from None
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    emb = _table_embeddings(table, int(meta.get("vocab_size", 0)))
    ids = table.column("id").to_pylist()
    titles = table.column("title").to_pylist() if payload else []
    texts = table.column("text").to_pylist() if payload else []
    return Shard(ids, titles, texts, emb)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({str(e)[:80]}); delete it and re-run the encode") from None
    if not isinstance(out, dict):
        raise DataError(f"{path}: expected a JSON object; delete it and re-run the encode")
    return out


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def check_job(out: Path, job: dict[str, Any]) -> None:
    """Record the job's settings in ``out/job.json``, or check that a re-run uses the same ones."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / JOB
    job = {"format": SHARD_FORMAT, "version": FORMAT_VERSION, **job}
    if path.exists():
        old = _read_json(path)
        diff = sorted(k for k in set(old) | set(job) if old.get(k) != job.get(k))
        if diff:
            k = diff[0]
            raise DataError(
                f"{out} holds shards of another job ({k}: {old.get(k)!r} there, {job.get(k)!r} now); "
                "write to a new folder, or delete it to start over"
            )
        return
    _write_json(path, job)


def finalize(out: Path, n_shards: int, n_rows: int) -> bool:
    """Write ``manifest.json`` when all ``n_shards`` shards exist (any process may; same content).
    Returns whether the job is complete."""
    shards: list[dict[str, Any]] = []
    for i in range(n_shards):
        rows = shard_rows(out / shard_name(i))
        if rows is None:
            return False
        shards.append({"file": shard_name(i), "rows": rows})
    total = sum(s["rows"] for s in shards)
    if total != n_rows:
        raise DataError(
            f"{out}: the shards hold {total} rows but the input has {n_rows}; delete the folder and re-run"
        )
    _write_json(out / MANIFEST, {**_read_json(out / JOB), "rows": n_rows, "shards": shards})
    return True


def is_shard_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file() or (Path(path) / JOB).is_file()


def read_manifest(out: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a finished sharded encode; a DataError when the job has not finished."""
    d = Path(out)
    if not (d / MANIFEST).is_file():
        if (d / JOB).is_file():
            raise DataError(
                f"{d}: the encode has not finished (no {MANIFEST}); re-run the same command to resume it"
            )
        raise DataError(
            f"{d}: not a sharded encode folder (no {MANIFEST}); write one with `embforge encode CORPUS -o DIR/`"
        )
    m = _read_json(d / MANIFEST)
    if m.get("format") != SHARD_FORMAT or not isinstance(m.get("shards"), list):
        raise DataError(f"{d / MANIFEST}: not an embforge shard manifest; re-run the encode")
    return m


def iter_shards(
    out: str | os.PathLike, heads: Sequence[str] | None = None, payload: bool = True
) -> Iterator[Shard]:
    """The shards of a finished encode in order, one in memory at a time."""
    d = Path(out)
    for s in read_manifest(d)["shards"]:
        yield read_shard(d / s["file"], heads, payload)
