"""Retrieval indexes over arrays: dense (exact, int8/binary, faiss HNSW/IVF-Flat/IVF-PQ),
learned-sparse inverted index, BM25 (bm25s), multi-vector MaxSim store (exact, and compressed PLAID-style), a Qdrant collection, and the
hybrid index that retrieves with some and re-ranks with all of them.

Every backend follows the ``Index`` protocol (add / delete / search / save / load)
and is registered in ``INDEXES`` by name; ``load_index(dir)`` opens any saved one.
Scores come from :mod:`embforge.scoring`; ``embforge.search`` builds on this package.
"""

from embforge.index.ann import HNSWIndex, IVFFlatIndex, IVFPQIndex
from embforge.index.base import INDEXES, BaseIndex, IdMap, Index, load_index, topk
from embforge.index.bm25 import BM25Index, bm25_weights, counts_from_ids, term_counts
from embforge.index.dense import ExactDenseIndex, prepare_dense
from embforge.index.hybrid import HybridIndex
from embforge.index.multivector import MultiVectorIndex
from embforge.index.plaid import PlaidIndex
from embforge.index.qdrant import QdrantIndex
from embforge.index.sparse import SparseIndex
from embforge.index.storage import FORMAT_VERSION

__all__ = [
    "Index",
    "BaseIndex",
    "IdMap",
    "INDEXES",
    "FORMAT_VERSION",
    "load_index",
    "topk",
    "ExactDenseIndex",
    "HNSWIndex",
    "IVFFlatIndex",
    "IVFPQIndex",
    "prepare_dense",
    "SparseIndex",
    "BM25Index",
    "bm25_weights",
    "term_counts",
    "counts_from_ids",
    "MultiVectorIndex",
    "PlaidIndex",
    "HybridIndex",
    "QdrantIndex",
]
