"""Typed values that cross stage boundaries (see DESIGN.md's data flow).

Shape letters, used everywhere in embforge: B batch, T tokens, H hidden,
D dense dim, V vocab, M multi-vector dim, Q queries, N documents per query.

Training side (torch tensors, with graph): ``Batch`` -> model -> ``EmbeddingOutput``
-> scoring/losses -> ``LossOutput``.
Inference/retrieval side (numpy, no graph): ``Encoder.encode`` -> ``Embeddings``
(-> index) -> ``Hits``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # torch is heavy; types only need it for annotations
    import torch

__all__ = [
    "HEADS",
    "Head",
    "Role",
    "Batch",
    "EmbeddingOutput",
    "SparseVectors",
    "Embeddings",
    "Hits",
    "LossOutput",
]

Head = Literal["dense", "sparse", "multivector"]
#: The built-in BGE-M3 heads (Chen et al., 2024, "BGE M3-Embedding"), in their canonical order.
#: Plugin heads live in ``embforge.model.heads.HEADS`` (the head registry) next to these.
HEADS: tuple[str, ...] = ("dense", "sparse", "multivector")
#: FlagEmbedding's output keys for the three heads (``Embeddings["dense_vecs"]`` ...).
FLAG_KEYS: tuple[str, ...] = ("dense_vecs", "lexical_weights", "colbert_vecs")
Role = Literal["query", "document"]


@dataclass(frozen=True)
class Batch:
    """Tokenized texts.

    Attributes:
        input_ids: (B, T) int64.
        attention_mask: (B, T) int64, 1 = real token.
        pool_mask: optional (B, T) mask of the tokens to pool over (e.g. NV-Embed
            excludes instruction tokens); None = attention_mask.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        pm = None if self.pool_mask is None else self.pool_mask.to(device)
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), pm)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class EmbeddingOutput:
    """All heads' outputs of one forward pass (torch, keeps the graph when training).

    Attributes:
        dense: (B, D) L2-normalised dense vectors, or None if not computed.
        sparse: (B, T) per-token lexical weights ``ReLU(W_lex^T H)``, special and
            padding tokens set to 0; pair with ``input_ids`` to get term weights
            (a term occurring several times keeps its max). None if not computed.
        multivector: (B, T-1, M) L2-normalised ColBERT vectors of the non-[CLS]
            tokens, or None.
        multivector_mask: (B, T-1) 1 for real (non-padding) multi-vector tokens.
        input_ids: (B, T) the token ids the outputs align with.
        attention_mask: (B, T).
        extra: outputs of plugin heads, by head name (a registered head's own tensors); None when
            no plugin head ran, so code that walks the tensor fields sees only tensors.

    ``output(name)`` and ``outputs`` read every head alike, built-in or plugin.
    """

    dense: torch.Tensor | None = None
    sparse: torch.Tensor | None = None
    multivector: torch.Tensor | None = None
    multivector_mask: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    extra: Mapping[str, Any] | None = None

    def output(self, head: str) -> Any:
        """The output of ``head`` (None when it was not computed)."""
        return _output(self, head)

    @property
    def outputs(self) -> dict[str, Any]:
        """Head name -> output, for every head that was computed."""
        return _outputs(self)

    @classmethod
    def from_parts(cls, parts: Mapping[str, Any], **fields: Any) -> EmbeddingOutput:
        """Build from ``{field or head name: value}``: known fields go to attributes, the rest to ``extra``."""
        return _from_parts(cls, parts, fields)


@dataclass(frozen=True)
class SparseVectors:
    """Learned-sparse (lexical) vectors of N texts in CSR layout (numpy).

    Row i holds the terms of text i: ``indices[indptr[i]:indptr[i+1]]`` are token
    ids (unique per row, each with its max weight), ``values[...]`` their weights.

    Attributes:
        indptr: (N+1,) int64.
        indices: (nnz,) int32 token ids.
        values: (nnz,) float32 weights > 0.
        vocab_size: V, the number of columns.
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    vocab_size: int

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> dict[int, float]:
        """Term id -> weight of text ``i``."""
        a, b = int(self.indptr[i]), int(self.indptr[i + 1])
        return {int(t): float(w) for t, w in zip(self.indices[a:b], self.values[a:b])}

    def to_dicts(self) -> list[dict[int, float]]:
        return [self.row(i) for i in range(len(self))]

    def to_scipy(self):  # -> scipy.sparse.csr_matrix (N, V)
        import scipy.sparse as sp

        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(len(self), self.vocab_size))

    @classmethod
    def from_dicts(cls, rows: list[dict[int, float]], vocab_size: int) -> SparseVectors:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        for i, r in enumerate(rows):
            indptr[i + 1] = indptr[i] + len(r)
        indices = np.fromiter((t for r in rows for t in r), dtype=np.int32, count=int(indptr[-1]))
        values = np.fromiter((w for r in rows for w in r.values()), dtype=np.float32, count=int(indptr[-1]))
        return cls(indptr, indices, values, vocab_size)


@dataclass(frozen=True)
class Embeddings:
    """What ``Encoder.encode`` returns for N texts (numpy, in input order).

    Attributes:
        dense: (N, D) float32, L2-normalised (after Matryoshka truncation if asked).
        sparse: lexical weights as ``SparseVectors``.
        multivector: N arrays of shape (T_i, M), float32, L2-normalised rows.
        num_tokens: (N,) int tokens per text after truncation (for usage counts).
        extra: outputs of plugin heads, by head name (N rows each, e.g. an (N, D') array); None when
            no plugin head ran.

    ``output(name)`` and ``outputs`` read every head alike, built-in or plugin.
    """

    dense: np.ndarray | None = None
    sparse: SparseVectors | None = None
    multivector: list[np.ndarray] | None = None
    num_tokens: np.ndarray | None = None
    extra: Mapping[str, Any] | None = None

    def __len__(self) -> int:
        for x in (self.dense, self.sparse, self.multivector, self.num_tokens, *(self.extra or {}).values()):
            if x is not None:
                return len(x)
        return 0

    def output(self, head: str) -> Any:
        """The output of ``head`` (None when it was not computed)."""
        return _output(self, head)

    @property
    def outputs(self) -> dict[str, Any]:
        """Head name -> output, for every head that was computed."""
        return _outputs(self)

    def __getitem__(self, key: str) -> Any:
        """FlagEmbedding's output keys (``BGEM3FlagModel.encode`` returns a dict): ``"dense_vecs"``
        (N, D), ``"lexical_weights"`` (N dicts {token id as a string: weight}, FlagEmbedding's form),
        ``"colbert_vecs"`` (N arrays); None for a head that was not computed, as there."""
        if key == "dense_vecs":
            return self.dense
        if key == "lexical_weights":
            rows = None if self.sparse is None else self.sparse.to_dicts()
            return None if rows is None else [{str(t): w for t, w in r.items()} for r in rows]
        if key == "colbert_vecs":
            return self.multivector
        raise KeyError(f"{key!r}: Embeddings read by FlagEmbedding's keys {', '.join(FLAG_KEYS)}; or use .dense etc.")

    def __contains__(self, key: object) -> bool:
        return key in FLAG_KEYS and self[str(key)] is not None

    def keys(self) -> list[str]:
        """The FlagEmbedding keys that hold a value."""
        return [k for k in FLAG_KEYS if k in self]

    @classmethod
    def from_parts(cls, parts: Mapping[str, Any], **fields: Any) -> Embeddings:
        """Build from ``{field or head name: value}``: known fields go to attributes, the rest to ``extra``."""
        return _from_parts(cls, parts, fields)


def _output(obj: EmbeddingOutput | Embeddings, head: str) -> Any:
    if head in HEADS or (head != "extra" and head in obj.__dataclass_fields__):
        return getattr(obj, head)
    return (obj.extra or {}).get(head)


def _outputs(obj: EmbeddingOutput | Embeddings) -> dict[str, Any]:
    out = {h: getattr(obj, h) for h in HEADS if getattr(obj, h) is not None}
    out.update({h: v for h, v in (obj.extra or {}).items() if v is not None})
    return out


def _from_parts(cls, parts: Mapping[str, Any], fields: dict[str, Any]):
    names = {f for f in cls.__dataclass_fields__ if f != "extra"}
    known = {k: v for k, v in parts.items() if k in names}
    extra = {k: v for k, v in parts.items() if k not in names}
    return cls(**known, **fields, extra=extra or None)


@dataclass(frozen=True)
class Hits:
    """Ranked search results for Q queries.

    Attributes:
        ids: Q lists of document ids, best first (length <= k each).
        scores: Q lists of final scores aligned with ``ids``.
        per_head: optional head name -> Q lists of that head's scores, aligned with ``ids``.
    """

    ids: list[list[str]]
    scores: list[list[float]]
    per_head: dict[str, list[list[float]]] = field(default_factory=dict)

    def to_run(self, query_ids: list[str]) -> dict[str, dict[str, float]]:
        """As a pytrec_eval run: qid -> {docid: score}."""
        return {
            q: {d: float(s) for d, s in zip(ids, sc)} for q, ids, sc in zip(query_ids, self.ids, self.scores)
        }


@dataclass(frozen=True)
class LossOutput:
    """A loss value and its named parts (e.g. ``{"infonce/dense": ..., "kd/sparse": ...}``)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
