"""Score fusion lives in the scoring core, :mod:`embforge.scoring.fusion`; re-exported here."""

from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K, ranks, rrf, weighted_sum

__all__ = ["FUSIONS", "DEFAULT_WEIGHTS", "RRF_K", "weighted_sum", "rrf", "ranks"]
