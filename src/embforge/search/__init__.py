"""Search on top of the indexes: hybrid (multi-head) index, score fusion, run files.

``HybridIndex`` retrieves candidates with dense and/or sparse and re-ranks them by
``w1*s_dense + w2*s_lex + w3*s_mul`` (1, 0.3, 1) or by RRF.
"""

from embforge.search.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K, rrf, weighted_sum
from embforge.search.hybrid import HybridIndex
from embforge.search.retriever import DENSE_BACKENDS, Retriever, build_index, make_hybrid
from embforge.search.runs import write_run

__all__ = [
    "HybridIndex",
    "FUSIONS",
    "DEFAULT_WEIGHTS",
    "RRF_K",
    "weighted_sum",
    "rrf",
    "Retriever",
    "build_index",
    "make_hybrid",
    "DENSE_BACKENDS",
    "write_run",
]
