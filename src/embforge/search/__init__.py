"""Search on top of the indexes: the retriever (encoder + saved index), run files.

Builds on :mod:`embforge.index` (which holds ``HybridIndex``) and :mod:`embforge.scoring`
(fusion); nothing in ``index`` imports ``search``. ``HybridIndex`` retrieves candidates
with dense and/or sparse and re-ranks them by ``w1*s_dense + w2*s_lex + w3*s_mul``
(``DEFAULT_WEIGHTS``) or by another fusion (normalised sums, RRF).
"""

from embforge.index.hybrid import HybridIndex
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K, rrf, weighted_sum
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
