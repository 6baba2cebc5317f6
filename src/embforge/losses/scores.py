"""Per-head score matrices for the losses: a re-export of ``embforge.model.heads.head_scores``.

The head registry dispatches to each head's score function from ``embforge.scoring``
(BGE-M3, Chen et al., 2024: dense inner product, lexical match, MaxSim divided by the
number of query tokens). New code imports ``head_scores`` from ``embforge.model.heads``.
"""

from embforge.model.heads import head_scores
from embforge.scoring import dense_scores, lexical_scores, maxsim_scores

__all__ = ["head_scores", "dense_scores", "lexical_scores", "maxsim_scores"]
