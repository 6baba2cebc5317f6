"""The head plugin protocol and its registry.

A head maps the backbone's last hidden states H (B, T, H) of one forward pass to
one output. Everything the rest of embforge needs from a head lives on its class,
so adding a head is one file plus one ``HEADS.add(name, cls)`` line:

- ``build(hidden_size, tokenizer, config)``: its parameters;
- ``forward(hidden, batch, opts)``: ``{field: tensor}`` placed into ``EmbeddingOutput``
  (a built-in field such as ``"dense"``, or the head's own name for a plugin head);
- ``bge_m3_file`` / ``file_module()`` / ``init_missing()``: its weights in the BGE-M3
  layout (``sparse_linear.pt``, ``colbert_linear.pt``), and its deterministic init when a
  checkpoint lacks them;
- ``to_numpy`` / ``stack``: how ``encode`` turns its torch output into ``Embeddings``;
  ``row`` / ``from_rows``: per-text values for the server;
- ``score`` / ``score_numpy``: its (Q, N) score function from ``embforge.scoring``.

``head_scores(q, d, head)`` dispatches through ``HEADS``; losses, evaluation and
serving iterate ``encoder.head_names`` instead of naming heads.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from embforge.registry import Registry
from embforge.scoring import dense_scores
from embforge.types import Batch, EmbeddingOutput, Embeddings

if TYPE_CHECKING:
    from embforge.model.config import EncoderConfig

__all__ = [
    "HEADS",
    "Head",
    "HeadOptions",
    "HeadRegistry",
    "head_scores",
    "init_linear_",
    "numpy_dense_scores",
]


@dataclass(frozen=True)
class HeadOptions:
    """Per-call options a head may use.

    Attributes:
        dim: Matryoshka truncation of dense vectors (None = full size).
        cls_positions: per text, the [CLS] positions of an MCLS-tokenized input (long inputs).
    """

    dim: int | None = None
    cls_positions: Sequence[Sequence[int]] | None = None


class Head(nn.Module, abc.ABC):
    """Base class of a head plugin; subclasses set ``name``, define ``build`` and ``forward``
    (abstract: a head class without them cannot be instantiated), and override what else differs.

    The defaults suit a head whose output is one (B, D') tensor per text, stored in
    ``EmbeddingOutput.extra[name]`` / ``Embeddings.extra[name]`` as an (N, D') float32
    array, scored by inner product.
    """

    name: ClassVar[str] = ""
    #: File of this head's weights in the BGE-M3 layout (None: it has none there).
    bge_m3_file: ClassVar[str | None] = None

    @classmethod
    @abc.abstractmethod
    def build(cls, hidden_size: int, tokenizer: Any, config: EncoderConfig) -> Head:
        """A fresh head for a backbone of hidden size H."""

    @abc.abstractmethod
    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        """Hidden states (B, T, H) -> ``{EmbeddingOutput field or head name: tensor}``."""

    # ------------------------------------------------------------ checkpoints
    def file_module(self) -> nn.Module:
        """The module whose state dict is ``bge_m3_file`` (keys as BGE-M3 writes them)."""
        return self

    def init_missing(self) -> str | None:
        """Deterministic init when a checkpoint lacks this head; returns how (None = nothing to init)."""
        return None

    #: The "no trained weights" warning of a head ``init_missing`` initialised, printed the first
    #: time the head is used to encode (``warn_untrained``), not at load: a dense-only user of a
    #: checkpoint without sparse / multi-vector weights never sees it.
    untrained_note: str | None = None

    def warn_untrained(self) -> None:
        """Print ``untrained_note`` once (then forget it)."""
        if self.untrained_note:
            logging.getLogger("embforge").warning("%s", self.untrained_note)
            self.untrained_note = None

    # ------------------------------------------------------------ encode (torch -> numpy)
    def to_numpy(self, out: dict[str, torch.Tensor], batch: Batch, lengths: np.ndarray) -> list[Any]:
        """One batch's outputs -> one numpy value per text (``lengths``: tokens per text)."""
        return list(out[self.name].float().cpu().numpy())

    @classmethod
    def stack(cls, rows: list[Any], vocab_size: int) -> Any:
        """Per-text values of ``to_numpy`` (input order) -> the ``Embeddings`` value."""
        return np.stack(rows).astype(np.float32, copy=False)

    # ------------------------------------------------------------ serving (per text)
    @classmethod
    def row(cls, value: Any, i: int) -> Any:
        """Text ``i``'s value from an ``Embeddings`` value."""
        return value[i]

    @classmethod
    def from_rows(cls, rows: list[Any], vocab_size: int) -> Any:
        """Per-text values of ``row`` -> an ``Embeddings`` value."""
        return np.stack(rows).astype(np.float32, copy=False)

    # ------------------------------------------------------------ scores
    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        """(Q, N) differentiable scores between two ``EmbeddingOutput`` s (default: inner product)."""
        qa, da = _need(q, d, cls.name)
        return dense_scores(qa, da)

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        """(Q, N) float32 scores between two encoded ``Embeddings`` (default: inner product)."""
        qa, da = _need(q, d, cls.name)
        return numpy_dense_scores(qa, da)


class HeadRegistry(Registry):
    """The head registry: ``Registry`` plus registration order (the order of ``Encoder.heads``)."""

    def __init__(self) -> None:
        super().__init__("head")
        self._order: list[str] = []

    def register(self, name: str) -> Callable[[type[Head]], type[Head]]:
        deco = super().register(name)

        def wrap(cls: type[Head]) -> type[Head]:
            if not (isinstance(cls, type) and issubclass(cls, Head)):
                raise TypeError(
                    f"head {name!r}: expected a subclass of embforge.model.heads.Head, got {cls!r}"
                )
            deco(cls)
            cls.name = name
            self._order.append(name)
            return cls

        return wrap

    def unregister(self, name: str) -> None:
        """Remove a head (a test that registers a toy head removes it again)."""
        self.get(name)
        del self._items[name]  # Registry's storage
        self._order.remove(name)

    def ordered(self, names: Sequence[str] | None = None) -> tuple[str, ...]:
        """``names`` (checked: unknown -> "choose from" error) in registration order; None = all."""
        if names is None:
            return tuple(self._order)
        want = set()
        for n in names:
            self.get(n)  # the one "unknown head" check
            want.add(n)
        return tuple(n for n in self._order if n in want)


#: The head registry: built-in heads are added in ``embforge.model.heads.__init__``.
HEADS = HeadRegistry()


def head_scores(q: Any, d: Any, head: str) -> Any:
    """Score every query against every document with one head -> (Q, N).

    Both ``EmbeddingOutput`` (torch, differentiable) or both ``Embeddings`` (numpy float32).
    """
    cls = HEADS.get(head)
    if isinstance(q, EmbeddingOutput) and isinstance(d, EmbeddingOutput):
        return cls.score(q, d)
    if isinstance(q, Embeddings) and isinstance(d, Embeddings):
        return cls.score_numpy(q, d)
    raise TypeError(
        f"head_scores takes two EmbeddingOutput (torch) or two Embeddings (numpy), "
        f"got {type(q).__name__} and {type(d).__name__}"
    )


def numpy_dense_scores(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``scoring.dense_scores`` on numpy (Q, D) x (N, D) -> (Q, N) float32 (numpy's matmul, as eval used)."""
    return dense_scores(np.asarray(q, dtype=np.float32), np.asarray(d, dtype=np.float32))


def _need(q: Any, d: Any, head: str) -> tuple[Any, Any]:
    a, b = q.output(head), d.output(head)
    if a is None or b is None:
        raise ValueError(
            f"the loss needs the {head} head, but the model did not compute it; add {head!r} to model.heads"
        )
    return a, b


def init_linear_(linear: nn.Linear, seed: int) -> nn.Linear:
    """Deterministic init for a head missing from a checkpoint: N(0, 0.02) weights, zero bias,
    drawn from a private generator seeded with ``seed`` (the global RNG is untouched)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.02)
        if linear.bias is not None:
            linear.bias.zero_()
    return linear
