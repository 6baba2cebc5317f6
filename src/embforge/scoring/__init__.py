"""The scoring core: every retrieval score function of embforge, written once.

Dense inner product, lexical match, MaxSim (torch and numpy forms), Matryoshka
truncation, score fusion (weighted, normalised, RRF) and the default hybrid weights.
Training, evaluation, the indexes, mining teachers and serving all call these.
"""

from embforge.scoring.functions import (
    EMBEDDING_SCORES,
    dense_scores,
    embedding_scores,
    hybrid_scores,
    lexical_scores,
    sparse_vector_scores,
    term_weights,
)
from embforge.scoring.fusion import (
    DEFAULT_WEIGHTS,
    FUSIONS,
    M3_SCORE_WEIGHTS,
    RRF_K,
    fuse_rows_by_weights,
    minmax_fusion,
    minmax_normalize,
    ranks,
    rrf,
    weighted_parts,
    weighted_sum,
    zscore_fusion,
    zscore_normalize,
)
from embforge.scoring.matryoshka import truncate_dense
from embforge.scoring.maxsim import (
    DOC_MAJOR_PAIRS,
    MAXSIM_BLOCK,
    RERANK_KERNELS,
    maxsim_by_document,
    maxsim_flat,
    maxsim_padded,
    maxsim_rerank,
    maxsim_rerank_rows,
    maxsim_scores,
    maxsim_segments,
    multivector_list_scores,
    pad_multivectors,
    pad_queries,
    padded_token_index,
    segment_token_index,
    stack_tokens,
)
from embforge.scoring.weights import parse_weights

__all__ = [
    "DOC_MAJOR_PAIRS",
    "RERANK_KERNELS",
    "parse_weights",
    "DEFAULT_WEIGHTS",
    "M3_SCORE_WEIGHTS",
    "EMBEDDING_SCORES",
    "FUSIONS",
    "MAXSIM_BLOCK",
    "RRF_K",
    "dense_scores",
    "embedding_scores",
    "fuse_rows_by_weights",
    "hybrid_scores",
    "lexical_scores",
    "maxsim_by_document",
    "maxsim_flat",
    "maxsim_padded",
    "maxsim_rerank",
    "maxsim_rerank_rows",
    "maxsim_scores",
    "minmax_fusion",
    "minmax_normalize",
    "multivector_list_scores",
    "pad_multivectors",
    "pad_queries",
    "padded_token_index",
    "maxsim_segments",
    "segment_token_index",
    "ranks",
    "rrf",
    "sparse_vector_scores",
    "stack_tokens",
    "term_weights",
    "truncate_dense",
    "weighted_parts",
    "weighted_sum",
    "zscore_fusion",
    "zscore_normalize",
]
