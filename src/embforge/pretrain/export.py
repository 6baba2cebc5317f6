"""Save a pretrained backbone alone as an embforge encoder (dense head, [CLS] pooling).

After MLM or RetroMAE pretraining only the encoder is kept: no MLM head, no
RetroMAE decoder. The saved directory loads with ``Encoder.from_pretrained``
(and, in the "bge-m3" format, with FlagEmbedding / transformers) and works
with MCLS long-input encoding (``encode(..., long_inputs="mcls")``): RetroMAE
trains exactly the first-token state that MCLS averages.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder

__all__ = ["save_pretrained_encoder"]


def save_pretrained_encoder(
    backbone: nn.Module, tokenizer, path: str | Path, format: str = "embforge", pooling: str = "cls"
) -> Path:
    """Write ``backbone`` + ``tokenizer`` to ``path`` as an embforge ``Encoder`` with a dense head.

    Args:
        backbone: a transformers encoder (the ``base_model`` of a masked-LM).
        tokenizer: its tokenizer.
        path: output directory.
        format: "embforge" | "bge-m3" | "sentence-transformers" (see ``Encoder.save_pretrained``).
        pooling: dense pooling of the saved encoder; RetroMAE trains "cls".
    """
    path = Path(path)
    enc = Encoder(backbone, tokenizer, EncoderConfig(heads=["dense"], pooling=pooling))
    enc.save_pretrained(str(path), format=format)
    return path
