"""The Index protocol, the backend registry, id bookkeeping and shared helpers.

Every backend stores rows in insertion order and maps string ids to rows with an
``IdMap``. Deleting marks a row dead (a tombstone); re-adding an id replaces it
(the old row becomes a tombstone). ``compact()`` drops tombstones by rebuilding.
"""

from __future__ import annotations

import abc
import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from embforge.errors import CheckpointError, DataError, EmbforgeError
from embforge.index.storage import atomic_write_dir, check_array, load_array, read_manifest, save_array
from embforge.registry import Registry
from embforge.types import Embeddings, Hits, SparseVectors

__all__ = ["Index", "INDEXES", "IdMap", "BaseIndex", "topk", "load_index", "as_field"]

INDEXES: Registry[type[BaseIndex]] = Registry("index backend")


@runtime_checkable
class Index(Protocol):
    """What every index backend offers (pylate-style: small on purpose).

    ``vectors``/``queries`` are the backend's native array type (dense: (N, D)
    float array; sparse: ``SparseVectors``; multi-vector: list of (T_i, M) arrays)
    or an ``Embeddings`` holding that head.
    """

    kind: ClassVar[str]
    heads: ClassVar[tuple[str, ...]]

    def add(self, ids: Sequence[str], vectors: Any) -> None: ...

    def delete(self, ids: Sequence[str]) -> int: ...

    def search(self, queries: Any, k: int = 10) -> Hits: ...

    def save(self, path: str | os.PathLike) -> Path: ...

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> Index: ...

    def __len__(self) -> int: ...


def as_field(x: Any, head: str) -> Any:
    """The ``head`` field of an ``Embeddings``, or ``x`` itself if it is already native."""
    if isinstance(x, Embeddings):
        value = getattr(x, head)
        if value is None:
            raise DataError(f"the Embeddings have no {head!r} head; encode with heads=(..., {head!r}, ...)")
        return value
    return x


class IdMap:
    """String ids <-> row numbers, with tombstones.

    Attributes:
        ids: row -> id (dead rows keep their id until ``compact``).
        alive: (rows,) bool, False for deleted/replaced rows.
    """

    def __init__(self, ids: Sequence[str] = (), alive: np.ndarray | None = None) -> None:
        self.ids: list[str] = [str(i) for i in ids]
        self.alive = np.ones(len(self.ids), dtype=bool) if alive is None else np.array(alive, dtype=bool)
        self.row_of: dict[str, int] = {i: r for r, i in enumerate(self.ids) if self.alive[r]}

    def __len__(self) -> int:
        return len(self.row_of)

    @property
    def n_rows(self) -> int:
        return len(self.ids)

    @property
    def n_dead(self) -> int:
        return self.n_rows - len(self.row_of)

    def check_new(self, ids: Sequence[str], n: int, what: str) -> list[str]:
        ids = [str(i) for i in ids]
        if len(ids) != n:
            raise DataError(f"add() got {len(ids)} ids for {n} {what}; pass one id per vector")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            # set.add returns None: ``or seen.add(i)`` records i and keeps the test false
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]  # see above
            raise DataError(f"add() got the id {dup!r} more than once in one call; ids must be unique")
        return ids

    def append(self, ids: list[str]) -> None:
        """Add rows for ``ids``; an id already present is replaced (its old row becomes a tombstone)."""
        self.delete(ids)
        start = len(self.ids)
        self.ids.extend(ids)
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.row_of.update({i: start + r for r, i in enumerate(ids)})

    def delete(self, ids: Sequence[str]) -> int:
        n = 0
        for i in ids:
            r = self.row_of.pop(str(i), None)
            if r is not None:
                self.alive[r] = False
                n += 1
        return n

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Rows of ``ids``; -1 where an id is unknown or deleted."""
        return np.fromiter((self.row_of.get(str(i), -1) for i in ids), dtype=np.int64, count=len(ids))

    def save(self, d: Path) -> None:
        (d / "ids.json").write_text(json.dumps(self.ids))
        save_array(d, "alive", self.alive)

    @classmethod
    def load(cls, d: Path) -> IdMap:
        p = d / "ids.json"
        if not p.exists():
            raise CheckpointError(f"index file {p} is missing; the index directory is incomplete: rebuild it")
        try:
            ids = json.loads(p.read_bytes().decode("utf-8"))
        except (ValueError, RecursionError):
            raise CheckpointError(f"{p} is not valid JSON; the index is corrupt, rebuild it") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CheckpointError(f"{p} must be a JSON list of string ids; the index is corrupt, rebuild it")
        alive = np.asarray(load_array(d, "alive", mmap=False))
        check_array(d, "alive", alive, "b", 1)
        if len(alive) != len(ids):
            raise CheckpointError(
                f"{d}: ids.json has {len(ids)} ids but alive.npy has {len(alive)} rows; the index is corrupt, rebuild it"
            )
        return cls(ids, alive)


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` per row of ``scores`` (Q, N), best first.

    Returns:
        (rows (Q, k'), values (Q, k')) with k' = min(k, N); ties go to the lower row.
    """
    q, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((q, 0), np.int64), np.zeros((q, 0), scores.dtype)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (q, n))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1) if q else np.zeros((0, k), np.int64)
    rows = np.take_along_axis(part, order, axis=1)
    return rows, np.take_along_axis(vals, order, axis=1)


def hits_from_rows(idmap: IdMap, rows: np.ndarray, vals: np.ndarray) -> Hits:
    """Turn (Q, k) rows/scores into ``Hits``, dropping -inf / invalid rows (fewer than k live docs)."""
    ids, scores = [], []
    for r_row, v_row in zip(rows, vals):
        keep = (r_row >= 0) & np.isfinite(v_row)
        ids.append([idmap.ids[int(r)] for r in r_row[keep]])
        scores.append([float(v) for v in v_row[keep]])
    return Hits(ids=ids, scores=scores)


class BaseIndex(abc.ABC):
    """Shared persistence: ``save`` writes atomically via ``_write``; ``load`` reads via ``_read``.

    Abstract: a backend must implement ``add``, ``search``, ``config``, ``_write`` and ``_read``
    (instantiating one that misses any is a TypeError naming it)."""

    kind: ClassVar[str] = ""
    heads: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.idmap = IdMap()

    def __len__(self) -> int:
        return len(self.idmap)

    @property
    def ids(self) -> list[str]:
        """The live ids, in row order."""
        return [i for i, a in zip(self.idmap.ids, self.idmap.alive) if a]

    def delete(self, ids: Sequence[str]) -> int:
        """Delete ``ids`` (unknown ids are ignored); returns how many were deleted."""
        return self.idmap.delete(ids)

    # every backend implements these (the ``Index`` protocol); declared here so that a
    # ``BaseIndex`` from ``load_index`` types as an ``Index``
    @abc.abstractmethod
    def add(self, ids: Sequence[str], vectors: Any) -> None:
        """Append documents ``ids`` with their vectors."""

    @abc.abstractmethod
    def search(self, queries: Any, k: int = 10) -> Hits:
        """Top-``k`` documents per query."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The constructor arguments, saved in ``index.json`` (``_from_config`` rebuilds from them)."""

    @abc.abstractmethod
    def _write(self, d: Path) -> None:
        """Write the index's files into the (temporary) directory ``d``."""

    @classmethod
    @abc.abstractmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> BaseIndex:
        """Read an index from directory ``d`` (validating every array: a CheckpointError naming the file)."""

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write the index to directory ``path`` (replacing any previous index there)."""
        return atomic_write_dir(path, self._write)

    @classmethod
    def _from_config(cls, d: Path, manifest: dict[str, Any]) -> Any:
        """``cls(**config)`` from ``index.json``; an unknown key or bad value is a CheckpointError."""
        config = manifest.get("config") or {}
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(str(k) for k in config if k not in params or k == "self")
        if unknown:
            allowed = [p for p in params if p != "self"]
            raise CheckpointError(
                f"{d / 'index.json'}: unknown config key(s) {', '.join(unknown)} for a {cls.kind!r} index "
                f"(allowed: {', '.join(allowed)}); was it written by a newer embforge? rebuild it"
            )
        try:
            return cls(**config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{d / 'index.json'}: bad config for a {cls.kind!r} index ({e}); rebuild it") from None

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> BaseIndex:
        """Read an index directory written by ``save`` (arrays memory-mapped when ``mmap``)."""
        manifest = read_manifest(path, kind=cls.kind)
        return cls._read(Path(path), manifest, mmap)


def load_index(path: str | os.PathLike, mmap: bool = True) -> Index:
    """Load any embforge index directory, dispatching on the ``kind`` in its ``index.json``."""
    # every backend, "hybrid" included, is registered by ``embforge/index/__init__.py``,
    # which Python runs before this module
    manifest = read_manifest(path)
    try:
        cls = INDEXES.get(manifest["kind"])
    except EmbforgeError as e:
        raise CheckpointError(
            f"{Path(path) / 'index.json'}: {e} (was it written by a newer embforge?)"
        ) from None
    return cls._read(Path(path), manifest, mmap)


def check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_sparse(x: Any, what: str) -> SparseVectors:
    if not isinstance(x, SparseVectors):
        raise DataError(
            f"{what} must be SparseVectors (or Embeddings with a sparse head), got {type(x).__name__}"
        )
    return x
