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
* **Length buckets with their own batch sizes** (BGE M3-Embedding: "batch size varies with the
  sequence-length bucket"): with ``buckets`` (upper bounds in tokens) every source is split by
  record length and a bucket of upper bound ``L`` gets ``bucket_batch_sizes``' batch, about
  ``batch_size * L_0 / L`` records, so every step holds about the same number of tokens. A
  bucket too small for one batch joins the next longer bucket (a smaller batch, so it still fits).
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

__all__ = ["SourceBatchSampler", "bucket_batch_sizes"]


def bucket_batch_sizes(bounds: Sequence[int], batch_size: int, multiple: int = 1) -> list[int]:
    """Batch size per length bucket so each step holds about ``batch_size * bounds[0]`` tokens.

    ``batch_size`` is the batch of the first (shortest) bucket; a bucket with upper bound ``L``
    gets ``floor(batch_size * bounds[0] / L)``, rounded down to a multiple of ``multiple`` (the
    process count: every rank takes an equal slice) and at least ``multiple``.

    Example:
        >>> bucket_batch_sizes([512, 1024, 4096, 8192], 64)
        [64, 32, 8, 4]
        >>> bucket_batch_sizes([128, 8192], 32, multiple=2)
        [32, 2]
    """
    if not bounds or any(b < 1 for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ValueError(f"length buckets must be increasing positive token counts, got {list(bounds)}")
    out = []
    for bound in bounds:
        bs = batch_size * bounds[0] // bound
        out.append(max(multiple, bs - bs % multiple))
    return out


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
        buckets: upper bounds (tokens) of length buckets with their own batch sizes
            (``bucket_batch_sizes``); needs ``lengths``. None = one batch size for all.
        multiple: batch sizes of buckets are multiples of this (the process count).
    """

    def __init__(
        self,
        sources: Mapping[str, Sequence[int]],
        batch_size: int,
        lengths: Sequence[int] | None = None,
        seed: int = 0,
        one_source_per_batch: bool = True,
        group_factor: int = 50,
        buckets: Sequence[int] | None = None,
        multiple: int = 1,
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
        least = batch_size if buckets is None else min(bucket_batch_sizes(buckets, batch_size, multiple))
        small = {n: len(i) for n, i in sources.items() if len(i) < least}
        if small:
            listed = ", ".join(f"{n} ({k} records)" for n, k in sorted(small.items()))
            raise DataError(
                f"source(s) smaller than one batch of {least}: {listed}; every batch comes "
                f"from one source: lower loop.batch_size, merge these sources, or set "
                f"data.one_source_per_batch=false"
            )
        self.batch_size = batch_size
        self.lengths = None if lengths is None else np.asarray(lengths)
        # name -> (record indices, batch size of this group)
        self.groups: dict[str, tuple[np.ndarray, int]] = {}
        for name, idx in sorted(sources.items()):
            arr = np.asarray(idx, dtype=np.int64)
            if buckets is None:
                self.groups[name] = (arr, batch_size)
            else:
                self.groups.update(self._bucket_groups(name, arr, buckets, multiple))
        self.seed = seed
        self.group_factor = group_factor
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def _bucket_groups(
        self, name: str, idx: np.ndarray, bounds: Sequence[int], multiple: int
    ) -> dict[str, tuple[np.ndarray, int]]:
        """Split one source by length bucket; a bucket short of one batch joins the next longer one."""
        if self.lengths is None:
            raise ValueError("length buckets need the record lengths (lengths=...)")
        sizes = bucket_batch_sizes(bounds, self.batch_size, multiple)
        which = np.searchsorted(np.asarray(bounds), self.lengths[idx], side="left")
        which = np.minimum(which, len(bounds) - 1)  # longer than the last bound: last bucket
        out: dict[str, tuple[np.ndarray, int]] = {}
        carry = np.empty(0, dtype=np.int64)
        for b, (bound, bs) in enumerate(zip(bounds, sizes)):
            members = np.concatenate([carry, idx[which == b]])
            if len(members) >= bs:
                out[f"{name}@{bound}"], carry = (members, bs), carry[:0]
            else:
                carry = members
        if len(carry):  # the longest records, short of a batch: the last full group takes them
            if not out:
                out[f"{name}@{bounds[-1]}"] = (carry, sizes[-1])
            else:
                key = next(reversed(out))
                out[key] = (np.concatenate([out[key][0], carry]), sizes[-1])
        return out

    @property
    def sources(self) -> dict[str, np.ndarray]:
        """Group name -> record indices (a source, or a source's length bucket ``name@bound``)."""
        return {n: idx for n, (idx, _) in self.groups.items()}

    def group_batch_sizes(self) -> dict[str, int]:
        """Group name -> its batch size (``batch_size`` everywhere unless length buckets are on)."""
        return {n: bs for n, (_, bs) in self.groups.items()}

    def __len__(self) -> int:
        """Batches per epoch (incomplete tail batches of each group are dropped)."""
        return sum(len(i) // bs for i, bs in self.groups.values())

    def source_of_batches(self, epoch: int) -> list[str]:
        """The source name of each batch of ``epoch`` in order (for logs and tests)."""
        return [name for name, _ in self._epoch(epoch)]

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """All global batches of ``epoch``, in order."""
        return [b for _, b in self._epoch(epoch)]

    def _epoch(self, epoch: int) -> list[tuple[str, np.ndarray]]:
        rng = np.random.default_rng([self.seed, epoch])
        out: list[tuple[str, np.ndarray]] = []
        for name, (idx, bs) in self.groups.items():
            perm = idx[rng.permutation(len(idx))]
            out.extend((name, b) for b in self._source_batches(perm, bs))
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def _source_batches(self, perm: np.ndarray, bs: int) -> list[np.ndarray]:
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
