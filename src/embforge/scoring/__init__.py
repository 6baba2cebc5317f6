"""Pure scoring functions: dense inner product, lexical match, MaxSim, Matryoshka truncation, hybrid."""

from embforge.scoring.functions import (
    DEFAULT_WEIGHTS,
    HYBRID_WEIGHTS,
    dense_scores,
    hybrid_scores,
    lexical_scores,
    maxsim_scores,
    multivector_list_scores,
    pad_multivectors,
    sparse_vector_scores,
    term_weights,
)
from embforge.scoring.matryoshka import truncate_dense

__all__ = [
    "DEFAULT_WEIGHTS",
    "HYBRID_WEIGHTS",
    "dense_scores",
    "hybrid_scores",
    "lexical_scores",
    "maxsim_scores",
    "multivector_list_scores",
    "pad_multivectors",
    "sparse_vector_scores",
    "term_weights",
    "truncate_dense",
]
