"""Texts in, ranked ids out: an ``Encoder`` plus a ``HybridIndex``.

``build_index`` encodes a corpus in blocks and adds it to a hybrid index that
remembers which model (and Matryoshka dim / max length) made it, so that
``Retriever.load(index_dir)`` encodes queries the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from embforge.errors import ConfigError
from embforge.index.ann import HNSWIndex, IVFFlatIndex, IVFPQIndex
from embforge.index.base import load_index
from embforge.index.dense import ExactDenseIndex
from embforge.index.hybrid import HybridIndex
from embforge.index.multivector import MultiVectorIndex
from embforge.index.plaid import PlaidIndex
from embforge.index.qdrant import QdrantIndex
from embforge.index.sparse import SparseIndex
from embforge.model.encoder import Encoder
from embforge.registry import Registry
from embforge.types import HEADS, Hits

__all__ = [
    "DENSE_BACKENDS",
    "MULTIVECTOR_BACKENDS",
    "Retriever",
    "build_index",
    "make_hybrid",
    "model_fusion_kwargs",
]

DENSE_BACKENDS: Registry = Registry("dense index")
DENSE_BACKENDS.add("exact", lambda dim: ExactDenseIndex(dim=dim))
DENSE_BACKENDS.add("int8", lambda dim: ExactDenseIndex(dim=dim, quantization="int8"))
DENSE_BACKENDS.add("binary", lambda dim: ExactDenseIndex(dim=dim, quantization="binary"))
DENSE_BACKENDS.add("hnsw", lambda dim: HNSWIndex(dim=dim))
DENSE_BACKENDS.add("ivf", lambda dim: IVFFlatIndex(dim=dim))
DENSE_BACKENDS.add("ivfpq", lambda dim: IVFPQIndex(dim=dim))

#: Multi-vector backends by name, each ``make(dtype) -> index``: exact MaxSim over every document
#: (the reference), PLAID candidates re-scored exactly from the token store, or PLAID with no token
#: store (centroid ids + score-aware PQ codes, about 1/8 of float16 at 384 dims; approximate scores).
MULTIVECTOR_BACKENDS: Registry = Registry("multi-vector index")
MULTIVECTOR_BACKENDS.add("exact", lambda dtype: MultiVectorIndex(dtype=dtype))
MULTIVECTOR_BACKENDS.add("plaid", lambda dtype: PlaidIndex(dtype=dtype))
MULTIVECTOR_BACKENDS.add("plaid-codes", lambda dtype: PlaidIndex(dtype=dtype, store="codes"))


def make_hybrid(
    heads: Sequence[str],
    dense: str = "exact",
    dim: int | None = None,
    multivector_dtype: str = "float16",
    multivector: str = "exact",
    **hybrid: Any,
) -> HybridIndex:
    """An empty ``HybridIndex`` with one component per head (``multivector``: a name of
    ``MULTIVECTOR_BACKENDS``)."""
    bad = [h for h in heads if h not in HEADS]
    if bad or not heads:
        raise ConfigError(f"unknown head {bad[0] if bad else ''!r}; choose from: {', '.join(HEADS)}")
    return HybridIndex(
        dense=DENSE_BACKENDS.get(dense)(dim) if "dense" in heads else None,
        sparse=SparseIndex() if "sparse" in heads else None,
        multivector=MULTIVECTOR_BACKENDS.get(multivector)(multivector_dtype)
        if "multivector" in heads
        else None,
        **hybrid,
    )


def build_index(
    encoder: Any,
    ids: Sequence[str],
    texts: Sequence[str],
    heads: Sequence[str] = ("dense",),
    dense: str = "exact",
    dim: int | None = None,
    multivector_dtype: str = "float16",
    model: str | None = None,
    block: int = 4096,
    multivector: str = "exact",
    encode_kwargs: dict[str, Any] | None = None,
    progress: Any = None,
) -> HybridIndex:
    """Encode ``texts`` (role "document") in blocks of ``block`` and index them.

    ``model`` (path or hub id) is recorded in the index so ``Retriever.load`` can
    encode queries with the same model (a local folder as an absolute path, so the index works
    from any folder); ``encode_kwargs`` go to ``encoder.encode``.
    """
    kw = dict(encode_kwargs or {})
    # the dense index truncates too, so full-size query vectors (e.g. from the server) also fit
    fusion = getattr(encoder, "fusion", None)  # the model's fusion.json (embforge tune-fusion)
    hybrid = (
        {}
        if fusion is None
        else {"fusion": fusion.fusion, "weights": dict(fusion.weights), "rrf_k": fusion.rrf_k}
    )
    index = make_hybrid(
        heads, dense=dense, dim=dim, multivector_dtype=multivector_dtype, multivector=multivector, **hybrid
    )
    index.meta = {
        "encoder": {
            "model": recorded_model(model),
            "heads": list(heads),
            "dim": dim,
            "max_length": kw.get("max_length"),
        }
    }
    for a in range(0, len(texts), block):
        emb = encoder.encode(list(texts[a : a + block]), role="document", heads=tuple(heads), dim=dim, **kw)
        index.add(list(ids[a : a + block]), emb)
        if progress is not None:
            progress(min(len(texts), a + block), len(texts))
    return index


def recorded_model(model: str | os.PathLike | None) -> str | None:
    """What an index records as its model: a local folder as an absolute path (so the index
    searches from any folder), a hub id or None (the bundled model) as given."""
    if model is None:
        return None
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else str(model)


def query_model(index_dir: str | os.PathLike, recorded: str | None) -> str | None:
    """The model that encodes an index's queries: the recorded one; an older index's relative
    path is tried relative to the index folder, then as given (relative to the current folder)."""
    if recorded is None or Path(recorded).is_absolute():
        return recorded
    beside = Path(index_dir) / recorded
    return str(beside) if beside.is_dir() else recorded


def model_fusion_kwargs(
    encoder: Any, search_kw: dict[str, Any], texts: Sequence[str] | None = None
) -> dict[str, Any]:
    """``search_kw`` with the encoder's fusion (``fusion.json``) filling in fusion and weights the
    caller left None; per-query weight lists are left as they are. With the query ``texts`` and a
    fusion that has a coverage split (``ModelFusion.low_coverage``), the weights become one
    mapping per query (the split's for queries the tokenizer covers poorly)."""
    fusion = getattr(encoder, "fusion", None)
    w = search_kw.get("weights")
    if isinstance(w, (tuple, list)) and all(isinstance(x, (int, float)) for x in w):
        w = dict(zip(HEADS, map(float, w)))  # (w_dense, w_sparse, w_multivector)
    if fusion is None or (w is not None and not isinstance(w, Mapping)):
        return search_kw
    out = {**search_kw, **fusion.resolve(search_kw.get("fusion"), w)}
    if texts is not None and hasattr(encoder, "tokenizer"):
        per_query = fusion.query_weights(texts, encoder.tokenizer, search_kw.get("fusion"), w)
        if per_query is not None:
            out["weights"] = per_query
    return out


class Retriever:
    """Encode queries with ``encoder`` and search ``index``.

    Example:
        >>> r = Retriever.load("my_index")                     # doctest: +SKIP
        >>> hits = r.search(["who wrote hamlet?"], k=10)        # doctest: +SKIP
    """

    def __init__(
        self,
        encoder: Any,
        index: HybridIndex | QdrantIndex,
        dim: int | None = None,
        max_length: int | None = None,
    ):
        self.encoder, self.index, self.dim, self.max_length = encoder, index, dim, max_length
        self.model_source: str | None = None  # the path or hub id the encoder came from, if known

    @classmethod
    def load(cls, index_dir: str | os.PathLike, model: str | None = None, mmap: bool = True) -> Retriever:
        """Open ``index_dir`` and the model recorded in it (or ``model``)."""
        loaded = load_index(Path(index_dir), mmap=mmap)
        index: HybridIndex | QdrantIndex
        if isinstance(loaded, (HybridIndex, QdrantIndex)):  # both fuse their heads themselves
            index = loaded
        else:  # a single-head index: wrap it as the one component of a hybrid
            component: dict[str, Any] = {loaded.heads[0]: loaded}
            index = HybridIndex(**component)
        info = (getattr(index, "meta", None) or {}).get("encoder", {})
        source = model or query_model(index_dir, info.get("model"))
        encoder = Encoder.from_pretrained(source, heads=index.heads)
        retriever = cls(encoder, index, dim=info.get("dim"), max_length=info.get("max_length"))
        retriever.model_source = source
        return retriever

    def encode_queries(self, texts: Iterable[str], **kw: Any):
        kw.setdefault("max_length", self.max_length)
        return self.encoder.encode(list(texts), role="query", heads=self.index.heads, dim=self.dim, **kw)

    def search(
        self, texts: str | Iterable[str], k: int = 10, block: int = 1024, encode_kwargs=None, **search_kw: Any
    ) -> Hits:
        """Top-``k`` ids per query text (one string counts as one query, as in ``encode``);
        ``search_kw`` go to ``HybridIndex.search`` (weights, fusion, candidates).

        Without an explicit fusion / weights the model's ``fusion.json`` (``Encoder.fusion``) applies,
        else the index's own setting.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = Hits(ids=[], scores=[], per_head={h: [] for h in self.index.heads})
        for a in range(0, len(texts), block):
            q = self.encode_queries(texts[a : a + block], **(encode_kwargs or {}))
            h = self.index.search(
                q, k=k, **model_fusion_kwargs(self.encoder, search_kw, texts[a : a + block])
            )
            out.ids.extend(h.ids)
            out.scores.extend(h.scores)
            for name, v in h.per_head.items():
                out.per_head.setdefault(name, []).extend(v)
        return out
