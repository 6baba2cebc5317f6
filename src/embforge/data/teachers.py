"""Teachers for hard-negative mining: anything that embeds texts (and optionally rescores).

A teacher has two parts:

* ``embed(texts, role) -> (N, D) float32``: dense vectors for the candidate search
  (inner product in a faiss index; L2-normalise them for cosine).
* ``rescore(queries, docs) -> list of (len(docs[i]),) arrays`` (optional, when
  ``rescores`` is True): the final teacher score of each query against its own
  candidate list, e.g. the BGE-M3 hybrid ``w1*dense + w2*lexical + w3*multivector``
  (Chen et al., 2024), scored by :mod:`embforge.scoring`.

:class:`DenseTeacher` wraps a plain function (tests plant embeddings with it);
:class:`EncoderTeacher` wraps any embforge ``Encoder`` (dense, or hybrid with rescoring).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embforge.errors import ConfigError
from embforge.scoring import DEFAULT_WEIGHTS, hybrid_scores, maxsim_rerank, sparse_vector_scores, stack_tokens

__all__ = ["Teacher", "DenseTeacher", "EncoderTeacher"]


@runtime_checkable
class Teacher(Protocol):
    rescores: bool

    def embed(self, texts: list[str], role: str) -> np.ndarray:  # (N, D)
        ...

    def rescore(self, queries: list[str], docs: list[list[str]]) -> list[np.ndarray]: ...


class DenseTeacher:
    """A teacher from an embedding function ``fn(texts, role) -> (N, D)``; score = inner product.

    Example:
        >>> t = DenseTeacher(lambda texts, role: np.ones((len(texts), 2), np.float32))
        >>> t.embed(["a", "b"], "query").shape
        (2, 2)
    """

    rescores = False

    def __init__(self, fn: Callable[[list[str], str], Any]) -> None:
        self.fn = fn

    def embed(self, texts: list[str], role: str) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(self.fn(list(texts), role), dtype=np.float32))
        if x.ndim != 2 or x.shape[0] != len(texts):
            raise ValueError(f"teacher returned shape {x.shape} for {len(texts)} texts; expected (N, D)")
        return x

    def rescore(self, queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
        """Each query's inner product with each of its documents: the same score as the candidate
        search, so mining never needs it (``rescores`` is False); here for the ``Teacher`` protocol."""
        uniq = list(dict.fromkeys(t for ds in docs for t in ds))
        q = self.embed(queries, "query")
        d = self.embed(uniq, "document") if uniq else np.zeros((0, q.shape[1]), np.float32)
        pos = {t: i for i, t in enumerate(uniq)}
        return [
            d[[pos[t] for t in ds]] @ q[i] if ds else np.zeros(0, np.float32) for i, ds in enumerate(docs)
        ]


class EncoderTeacher:
    """An embforge ``Encoder`` as teacher.

    Args:
        encoder: anything with ``encode(texts, role=, heads=, batch_size=, max_length=)``
            returning ``types.Embeddings``.
        heads: ``("dense",)`` = dense teacher; more heads = candidates from dense search,
            then rescored with ``w1*dense + w2*lexical + w3*multivector``.
        weights: head -> hybrid weight (or a (dense, sparse, multivector) triple);
            default ``embforge.scoring.DEFAULT_WEIGHTS`` (BGE-M3, Chen et al., 2024).
    """

    def __init__(
        self,
        encoder: Any,
        heads: Sequence[str] = ("dense",),
        weights: Mapping[str, float] | Sequence[float] = DEFAULT_WEIGHTS,
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> None:
        heads = tuple(heads)
        unknown = sorted(set(heads) - {"dense", "sparse", "multivector"})
        if unknown or "dense" not in heads:
            raise ConfigError(
                f"teacher heads {heads}: need 'dense' (for the candidate search) plus any of sparse, multivector"
            )
        self.encoder, self.heads, self.weights = encoder, heads, weights
        self.batch_size, self.max_length = batch_size, max_length
        self.rescores = heads != ("dense",)

    def _encode(self, texts: list[str], role: str, heads: Sequence[str]):
        return self.encoder.encode(
            texts, role=role, heads=tuple(heads), batch_size=self.batch_size, max_length=self.max_length
        )

    def embed(self, texts: list[str], role: str) -> np.ndarray:
        return np.ascontiguousarray(self._encode(texts, role, ("dense",)).dense, dtype=np.float32)

    def rescore(self, queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
        uniq = list(dict.fromkeys(t for ds in docs for t in ds))
        pos = {t: i for i, t in enumerate(uniq)}
        rows = [np.array([pos[t] for t in ds], dtype=np.int64) for ds in docs]
        q = self._encode(queries, "query", self.heads)
        d = self._encode(uniq, "document", self.heads) if uniq else None
        lex = sparse_vector_scores(q.sparse, d.sparse) if d is not None and "sparse" in self.heads else None
        mul = None
        if d is not None and "multivector" in self.heads:
            lens = np.array([len(x) for x in d.multivector], np.int64)
            mul = maxsim_rerank(
                q.multivector, rows, lens, lambda r: stack_tokens([d.multivector[i] for i in r])[0]
            )
        out = []
        for i, j in enumerate(rows):
            if not len(j):
                out.append(np.zeros(0, np.float32))
                continue
            if d is None:
                raise RuntimeError("candidate rows were given but no documents were encoded")
            s = hybrid_scores(
                d.dense[j] @ q.dense[i],
                None if lex is None else lex[i, j],
                None if mul is None else mul[i],
                weights=self.weights,
            )
            out.append(np.asarray(s, dtype=np.float32))
        return out
