"""The encoder: HF backbone + a mapping of heads (``embforge.model.heads``), checkpoints, fast encode.

``Encoder`` (``embforge.model.encoder``) holds the backbone and ``head_modules``; the head
registry ``HEADS`` and ``head_scores`` live in ``embforge.model.heads``.
"""

from embforge.model.encoder import Encoder
from embforge.model.heads import HEADS, Head, head_scores

__all__ = ["HEADS", "Encoder", "Head", "head_scores"]
