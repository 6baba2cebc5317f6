"""Heads as plugins: the registry ``HEADS``, the ``Head`` base class and ``head_scores``.

The three BGE-M3 heads (Chen et al., 2024, "BGE M3-Embedding") are registered here,
in their canonical order. A new head is a ``Head`` subclass in its own file and one
``HEADS.add(name, cls)``; the encoder, ``encode``, checkpoints, ``head_scores`` and the
server pick it up by name.
"""

from embforge.model.heads.base import HEADS, Head, HeadOptions, HeadRegistry, head_scores, init_linear_
from embforge.model.heads.dense import DenseHead
from embforge.model.heads.multivector import MultiVectorHead
from embforge.model.heads.sparse import SparseHead
from embforge.scoring import truncate_dense

__all__ = [
    "HEADS",
    "DenseHead",
    "Head",
    "HeadOptions",
    "HeadRegistry",
    "MultiVectorHead",
    "SparseHead",
    "head_scores",
    "init_linear_",
    "truncate_dense",
]

HEADS.add("dense", DenseHead)
HEADS.add("sparse", SparseHead)
HEADS.add("multivector", MultiVectorHead)
