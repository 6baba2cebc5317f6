"""The hybrid index lives in :mod:`embforge.index.hybrid` (search builds on index, not the reverse)."""

from embforge.index.hybrid import HybridIndex

__all__ = ["HybridIndex"]
