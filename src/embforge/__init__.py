"""embforge: multilingual, multi-functional text embeddings in one toolkit.

Dense, learned-sparse and multi-vector (BGE-M3) encoders; contrastive and
self-distillation training; dense/sparse/multi-vector/hybrid indexes;
evaluation; an OpenAI-compatible server.

Heavy submodules are imported lazily: ``import embforge`` does no work.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"; resolved on first access (PEP 562).
_LAZY: dict[str, str] = {
    "Encoder": "embforge.model.encoder:Encoder",
    "Embeddings": "embforge.types:Embeddings",
    "EmbeddingOutput": "embforge.types:EmbeddingOutput",
    "SparseVectors": "embforge.types:SparseVectors",
    "Hits": "embforge.types:Hits",
    "LossOutput": "embforge.types:LossOutput",
    "EmbforgeError": "embforge.errors:EmbforgeError",
    "Retriever": "embforge.search.retriever:Retriever",
    "build_index": "embforge.search.retriever:build_index",
    "demo_path": "embforge.resources:demo_path",
    "load_beir": "embforge.eval.datasets:load_beir",
    "evaluate_retrieval": "embforge.eval.runner:evaluate_retrieval",
    "dense_scores": "embforge.scoring:dense_scores",
    "lexical_scores": "embforge.scoring:lexical_scores",
    "maxsim_scores": "embforge.scoring:maxsim_scores",
    "hybrid_scores": "embforge.scoring:hybrid_scores",
    "embedding_scores": "embforge.scoring:embedding_scores",
    "init_sparse_head": "embforge.model.heads.sparse:init_sparse_head",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'embforge' has no attribute {name!r}")
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
