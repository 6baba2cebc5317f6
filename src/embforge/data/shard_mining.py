"""The mining corpus read from the shards of a sharded encode, searched from disk.

``CorpusIndex`` (``embforge.data.mining``) holds every corpus text and vector in memory: 3M x 384
float32 is about 4.6 GiB plus the texts. ``ShardCorpusIndex`` has the same interface but keeps
neither: the dense vectors of the shards are copied once into one float32 file on disk, and a
search scans that file in blocks of ``block_rows`` rows read into one reused buffer (an exact
inner-product top-k, as ``faiss.IndexFlatIP``, merged block by block), so peak memory is the
block and the (Q, k) results whatever the corpus size. Candidate texts are read from the shards'
``text`` column when needed (the last few shards cached). Nothing is re-encoded; the teacher
must be the model that wrote the shards (its query vectors are searched against them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from embforge.data.shards import read_manifest, read_shard
from embforge.errors import DataError

__all__ = ["ShardCorpusIndex"]


class ShardCorpusIndex:
    """Exact inner-product search over the dense vectors of a finished sharded encode.

    Args:
        shard_dir: the output folder of ``embforge encode CORPUS -o DIR/`` (with ``dense``).
        block_rows: rows per block of the scan (memory: ``block_rows x D x 4`` bytes).
        query_chunk: queries scored against a block at once (memory: ``query_chunk x block_rows x 12`` bytes).
        workdir: where the vector file goes (default: a temporary folder, removed at exit).
        cached_shards: shards whose text column stays in memory between lookups.
    """

    def __init__(
        self,
        shard_dir: str | os.PathLike,
        block_rows: int = 32_768,
        query_chunk: int = 128,
        workdir: str | os.PathLike | None = None,
        cached_shards: int = 2,
    ) -> None:
        self.dir = Path(shard_dir)
        m = read_manifest(self.dir)
        if "dense" not in m["heads"]:
            raise DataError(
                f"{self.dir}: mining searches dense vectors; encode the corpus with --heads dense,..."
            )
        self.files = [self.dir / s["file"] for s in m["shards"]]
        self.starts = np.concatenate([[0], np.cumsum([int(s["rows"]) for s in m["shards"]])]).astype(np.int64)
        self.block_rows, self.cached, self.query_chunk = int(block_rows), int(cached_shards), int(query_chunk)
        self.pos: dict[str, int] = {}  # positives are embedded by the teacher (no text -> row map in memory)
        self._texts: OrderedDict[int, Any] = OrderedDict()
        tmp = Path(tempfile.mkdtemp(prefix="embforge-mine-", dir=workdir))
        atexit.register(shutil.rmtree, tmp, True)
        self.path = tmp / "dense.f32"
        self.dim = self._copy_vectors()

    def _copy_vectors(self) -> int:
        """Append the shards' dense vectors to the vector file, one record batch in memory at a time."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = 0
        with open(self.path, "wb") as f:
            for p in self.files:
                try:
                    for b in pq.ParquetFile(str(p)).iter_batches(batch_size=8192, columns=["dense"]):
                        col = b.column(0)
                        dim = col.type.list_size
                        f.write(np.asarray(col.flatten(), np.float32).tobytes())
                except (OSError, pa.ArrowException) as e:
                    raise DataError(
                        f"{p}: not a readable shard ({str(e)[:120]}); re-run the encode"
                    ) from None
        if not dim:
            raise DataError(f"{self.dir}: the shards hold no rows; the mining corpus is empty")
        return dim

    def __len__(self) -> int:
        return int(self.starts[-1])

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) queries -> scores (Q, k) and corpus rows (Q, k), best first (as faiss)."""
        q = np.ascontiguousarray(q, np.float32)
        if q.shape[1] != self.dim:
            raise DataError(
                f"the teacher's vectors have {q.shape[1]} dims but the shards in {self.dir} have {self.dim}; "
                "mine with the model that encoded the shards (--model)"
            )
        k = min(k, len(self))
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.zeros((len(q), 0), np.int64)
        buf = np.empty(self.block_rows * self.dim, np.float32)
        with open(self.path, "rb", buffering=0) as f:
            for a in range(0, len(self), self.block_rows):
                n = min(self.block_rows, len(self) - a)
                view = memoryview(buf[: n * self.dim]).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
                if f.readinto(view) != len(view):
                    raise DataError(
                        f"{self.path}: the vector file is shorter than the manifest says; mine again"
                    )
                block = buf[: n * self.dim].reshape(n, self.dim)
                parts = [
                    _block_top(q[c : c + self.query_chunk], block, k, a)
                    for c in range(0, len(q), self.query_chunk)
                ]
                s_all = np.concatenate([best_s, np.concatenate([p[0] for p in parts])], axis=1)
                i_all = np.concatenate([best_i, np.concatenate([p[1] for p in parts])], axis=1)
                best_s, best_i = _top(s_all, i_all, k)
        order = np.lexsort((best_i, -best_s), axis=1)
        return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)

    def _shard_texts(self, s: int) -> Any:
        if s not in self._texts:
            self._texts[s] = read_shard(self.files[s], heads=[], payload=True).texts
            while len(self._texts) > self.cached:
                self._texts.popitem(last=False)
        self._texts.move_to_end(s)
        return self._texts[s]

    def texts_of(self, rows: np.ndarray) -> list[list[str]]:
        """The texts of (Q, k) corpus rows (-1 skipped), read from the shards shard by shard."""
        flat = np.asarray(rows).ravel()
        out: dict[int, str] = {}
        shard = np.searchsorted(self.starts, flat, side="right") - 1
        for s in np.unique(shard[flat >= 0]):
            texts = self._shard_texts(int(s))
            for r in np.unique(flat[(shard == s) & (flat >= 0)]):
                out[int(r)] = texts[int(r - self.starts[s])]
        return [[out[int(j)] for j in row if j >= 0] for row in np.asarray(rows)]

    def vectors(self, positions: list[int]) -> np.ndarray:
        """Dense vectors of corpus rows, read from the vector file."""
        mm = np.memmap(self.path, np.float32, "r", shape=(len(self), self.dim))
        return np.array(mm[np.asarray(positions, np.int64)])


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row (unordered)."""
    if scores.shape[1] <= k:
        return scores, rows
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, part, 1), np.take_along_axis(rows, part, 1)


def _block_top(q: np.ndarray, block: np.ndarray, k: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, corpus rows) of queries ``q`` in one block of rows starting at ``start``."""
    s = q @ block.T
    rows = np.broadcast_to(np.arange(start, start + len(block), dtype=np.int64), s.shape)
    return _top(s, rows, k)
