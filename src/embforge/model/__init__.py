"""The encoder: HF backbone + dense / sparse / multi-vector heads, checkpoints, fast encode.

Import the pieces from their modules (``embforge.model.encoder.Encoder``, ...); this package
imports nothing heavy on its own.
"""

__all__ = ["Encoder"]


def __getattr__(name: str):
    if name == "Encoder":
        from embforge.model.encoder import Encoder

        return Encoder
    raise AttributeError(name)
