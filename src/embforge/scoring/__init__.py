"""Pure scoring functions: dense inner product, lexical match, MaxSim, weighted hybrid."""

from embforge.scoring.functions import (
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

__all__ = [
    "HYBRID_WEIGHTS",
    "dense_scores",
    "hybrid_scores",
    "lexical_scores",
    "maxsim_scores",
    "multivector_list_scores",
    "pad_multivectors",
    "sparse_vector_scores",
    "term_weights",
]
