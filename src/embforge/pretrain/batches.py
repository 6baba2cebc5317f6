"""A resumable, endless source of text batches for MLM / RetroMAE pretraining.

Shuffles the texts once per epoch with ``seed + epoch`` and cuts batches in
order; the masks of batch ``n`` come from a generator seeded with
``(seed, n)``. Its whole state is the number of batches handed out, so a
resumed run sees exactly the batches (and masks) it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from embforge.errors import ConfigError

__all__ = ["TextBatches"]


class TextBatches:
    """``iter()`` yields ``collate(texts, generator)`` batches forever.

    Args:
        texts: the training texts.
        batch_size: texts per batch (the last partial batch of an epoch is dropped).
        collate: ``(texts, generator) -> batch``.
        seed: shuffling and masking seed.
    """

    def __init__(
        self,
        texts: Sequence[str],
        batch_size: int,
        collate: Callable[[list[str], torch.Generator], Any],
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or len(texts) < batch_size:
            raise ConfigError(
                f"loop.batch_size={batch_size} needs at least that many texts, got {len(texts)}; "
                "lower the batch size or add data"
            )
        self.texts = list(texts)
        self.batch_size = int(batch_size)
        self.collate = collate
        self.seed = int(seed)
        self.position = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.texts) // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.texts))

    def __iter__(self) -> Iterator[Any]:
        per_epoch = len(self)
        order_epoch, order = -1, np.zeros(0, np.int64)  # replaced on the first pass (epoch >= 0)
        while True:
            epoch, k = divmod(self.position, per_epoch)
            if epoch != order_epoch:
                order_epoch, order = epoch, self._order(epoch)
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.position)
            self.position += 1
            yield self.collate([self.texts[i] for i in idx], gen)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
