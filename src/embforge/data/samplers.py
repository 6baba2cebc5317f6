"""Batch samplers for contrastive training: one source per batch, length groups,
the same choice on every rank, resumable position.

* **One data source per batch** (Arctic-Embed 2.0): in-batch negatives from the
  same source are harder and cannot be told apart by style or language; every
  language subset of a dataset is its own source. Sources are drawn in
  proportion to their size (each epoch visits every full batch of every source
  once, in a seeded random order).
* **Length groups** (BGE M3-Embedding): inside a source, records are shuffled,
  cut into mega-batches of ``group_factor * batch_size``, sorted by length
  inside each mega-batch and cut into batches, so a batch holds texts of similar
  length (little padding) while the order stays random.
* **Same group on every rank**: the sampler yields *global* batches from a
  seed shared by all processes; rank ``r`` takes its slice of each global batch,
  so all ranks work on the same source and length group at a step.
* **Resumable**: the order is a pure function of ``(seed, epoch)``; the state is
  ``(epoch, position)``.

Example:
    >>> s = SourceBatchSampler({"a": [0, 1, 2, 3], "b": [4, 5]}, batch_size=2, seed=0)
    >>> len(s), sorted(sorted(int(i) for i in b) for b in s.epoch_batches(0))
    (3, [[0, 2], [1, 3], [4, 5]])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from embforge.errors import DataError

__all__ = ["SourceBatchSampler"]


class SourceBatchSampler:
    """Global batches of record indices (see module doc).

    Args:
        sources: source name -> record indices.
        batch_size: records per global batch.
        lengths: length of every record (indexed by record index) for length grouping;
            None disables grouping.
        seed: shared by all ranks.
        one_source_per_batch: False pools all sources into one.
        group_factor: mega-batch size in batches for length grouping.
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence[int]],
        batch_size: int,
        lengths: Sequence[int] | None = None,
        seed: int = 0,
        one_source_per_batch: bool = True,
        group_factor: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        empty = [name for name, idx in sources.items() if len(idx) == 0]
        if not sources or empty:
            raise DataError(
                f"empty data source(s): {', '.join(empty) or '(none given)'}; every source "
                f"needs records: fix or drop the file"
            )
        if not one_source_per_batch:
            sources = {"all": [i for idx in sources.values() for i in idx]}
        small = {n: len(i) for n, i in sources.items() if len(i) < batch_size}
        if small:
            listed = ", ".join(f"{n} ({k} records)" for n, k in sorted(small.items()))
            raise DataError(
                f"source(s) smaller than one batch of {batch_size}: {listed}; every batch comes "
                f"from one source: lower loop.batch_size, merge these sources, or set "
                f"data.one_source_per_batch=false"
            )
        self.sources = {n: np.asarray(i, dtype=np.int64) for n, i in sorted(sources.items())}
        self.batch_size = batch_size
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.seed = seed
        self.group_factor = group_factor
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        """Batches per epoch (incomplete tail batches of each source are dropped)."""
        return sum(len(i) // self.batch_size for i in self.sources.values())

    def source_of_batches(self, epoch: int) -> list[str]:
        """The source name of each batch of ``epoch`` in order (for logs and tests)."""
        return [name for name, _ in self._epoch(epoch)]

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """All global batches of ``epoch``, in order."""
        return [b for _, b in self._epoch(epoch)]

    def _epoch(self, epoch: int) -> list[tuple[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch])
        out: list[tuple[str, np.ndarray]] = []
        for name, idx in self.sources.items():
            perm = idx[rng.permutation(len(idx))]
            out.extend((name, b) for b in self._source_batches(perm))
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def _source_batches(self, perm: np.ndarray) -> list[np.ndarray]:
        bs = self.batch_size
        n = (len(perm) // bs) * bs
        if self.lengths is None:
            return [perm[a : a + bs] for a in range(0, n, bs)]
        mega = bs * self.group_factor
        batches: list[np.ndarray] = []
        for a in range(0, len(perm), mega):
            chunk = perm[a : a + mega]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches.extend(chunk[b : b + bs] for b in range(0, len(chunk) - bs + 1, bs))
        # leftovers of each mega-batch are dropped; keep the count equal to len(self) per source
        return batches[: len(perm) // bs]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Endless global batches from the current (epoch, position)."""
        while True:
            batches = self._cached(self.epoch)
            while self.position < len(batches):
                b = batches[self.position]
                self.position += 1
                yield b
            self.epoch += 1
            self.position = 0

    def _cached(self, epoch: int) -> list[np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self.epoch_batches(epoch))
        return self._cache[1]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_batches": len(self),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if (
            state.get("seed") != self.seed
            or state.get("batch_size") != self.batch_size
            or state.get("num_batches") != len(self)
        ):
            raise ValueError(
                f"sampler state from the checkpoint (seed {state.get('seed')}, batch_size "
                f"{state.get('batch_size')}, {state.get('num_batches')} batches/epoch) does not match this "
                f"run (seed {self.seed}, batch_size {self.batch_size}, {len(self)} batches/epoch): "
                f"resume with the same data and settings, or start a new output_dir"
            )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
