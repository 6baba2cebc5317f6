"""Teachers for hard-negative mining: anything that embeds texts (and optionally rescores).

A teacher has two parts:

* ``embed(texts, role) -> (N, D) float32``: dense vectors for the candidate search
  (inner product in a faiss index; L2-normalise them for cosine).
* ``rescore(queries, docs) -> list of (len(docs[i]),) arrays`` (optional, when
  ``rescores`` is True): the final teacher score of each query against its own
  candidate list, e.g. the M3 hybrid ``w1*dense + w2*lexical + w3*multivector``.

:class:`DenseTeacher` wraps a plain function (tests plant embeddings with it);
:class:`EncoderTeacher` wraps any embforge ``Encoder`` (dense, or hybrid with rescoring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embforge.errors import ConfigError

__all__ = ["Teacher", "DenseTeacher", "EncoderTeacher", "pairwise_lexical", "pairwise_maxsim"]


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
        raise NotImplementedError("a DenseTeacher scores by inner product only")


class EncoderTeacher:
    """An embforge ``Encoder`` as teacher.

    Args:
        encoder: anything with ``encode(texts, role=, heads=, batch_size=, max_length=)``
            returning ``types.Embeddings``.
        heads: ``("dense",)`` = dense teacher; more heads = candidates from dense search,
            then rescored with ``w1*dense + w2*lexical + w3*multivector``.
        weights: the hybrid weights (M3 paper: 1, 0.3, 1).
    """

    def __init__(
        self,
        encoder: Any,
        heads: Sequence[str] = ("dense",),
        weights: tuple[float, float, float] = (1.0, 0.3, 1.0),
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
        q = self._encode(queries, "query", self.heads)
        d = self._encode(uniq, "document", self.heads) if uniq else None
        w1, w2, w3 = self.weights
        out = []
        for i, ds in enumerate(docs):
            j = np.array([pos[t] for t in ds], dtype=np.int64)
            s = w1 * (d.dense[j] @ q.dense[i]) if len(j) else np.zeros(0, np.float32)
            if "sparse" in self.heads and len(j):
                s = s + w2 * pairwise_lexical(q.sparse.row(i), [d.sparse.row(int(k)) for k in j])
            if "multivector" in self.heads and len(j):
                s = s + w3 * pairwise_maxsim(q.multivector[i], [d.multivector[int(k)] for k in j])
            out.append(np.asarray(s, dtype=np.float32))
        return out


def pairwise_lexical(q: dict[int, float], docs: list[dict[int, float]]) -> np.ndarray:
    """``s_lex = sum over shared terms of w_q * w_d`` for one query against each doc.

    Example:
        >>> pairwise_lexical({1: 2.0, 5: 1.0}, [{1: 0.5}, {7: 1.0}])
        array([1., 0.], dtype=float32)
    """
    return np.array([sum(w * d[t] for t, w in q.items() if t in d) for d in docs], dtype=np.float32)


def pairwise_maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """ColBERT ``(1/Nq) sum_i max_j <q_i, d_j>`` for one query (Tq, M) against each doc (Td, M).

    Example:
        >>> pairwise_maxsim(np.eye(2, dtype=np.float32), [np.array([[1.0, 0.0]], np.float32)])
        array([0.5], dtype=float32)
    """
    if len(q) == 0:
        return np.zeros(len(docs), np.float32)
    return np.array([float((q @ d.T).max(1).mean()) if len(d) else 0.0 for d in docs], dtype=np.float32)
