"""The encoder: HF backbone + a mapping of heads (``embforge.model.heads``), checkpoints, fast encode.

``Encoder`` (``embforge.model.encoder``) holds the backbone and ``head_modules``; the head
registry ``HEADS`` and ``head_scores`` live in ``embforge.model.heads``.

The package itself imports nothing: recipe and config modules import light submodules
(``embforge.model.plugins``, ``embforge.model.instructions``) without loading torch, and
``from embforge.model import Encoder`` loads the encoder on first use.
"""

import importlib
from typing import Any

__all__ = ["HEADS", "Encoder", "Head", "head_scores"]

_LAZY = {
    "Encoder": "embforge.model.encoder",
    "HEADS": "embforge.model.heads",
    "Head": "embforge.model.heads",
    "head_scores": "embforge.model.heads",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embforge.model' has no attribute {name!r}")
