"""RetroMAE loss: encoder MLM + decoder reconstruction.

Xiao et al. 2022, "RetroMAE: Pre-Training Retrieval-oriented Language Models
Via Masked Auto-Encoder". The encoder is trained with ordinary MLM on a
moderately masked input (15-30%); a one-layer decoder rebuilds 100% of the
tokens from the encoder's sentence embedding plus an aggressively masked
context (50-70%). Total loss = encoder MLM loss + decoder reconstruction loss.
Sibling: :func:`embforge.losses.mlm.mlm_loss` (the encoder part alone).
"""

from __future__ import annotations

import torch

from embforge.losses.mlm import mlm_loss
from embforge.types import LossOutput

__all__ = ["retromae_loss"]


def retromae_loss(
    encoder_logits: torch.Tensor,
    encoder_labels: torch.Tensor,
    decoder_logits: torch.Tensor,
    decoder_labels: torch.Tensor,
) -> LossOutput:
    """Sum of the encoder MLM loss and the decoder reconstruction loss.

    Args:
        encoder_logits: (B, T, V) or (N, V) encoder MLM scores.
        encoder_labels: (B, T) or (N,) ids of the masked tokens, ``-100`` elsewhere.
        decoder_logits: (B, T, V) or (N', V) decoder scores.
        decoder_labels: (B, T) or (N',) ids of every text token, ``-100`` at the
            special and padding positions.

    Returns:
        ``LossOutput`` with parts ``retromae/encoder_mlm`` and ``retromae/decoder``.

    Example:
        >>> import torch
        >>> z, y = torch.zeros(3, 5), torch.tensor([0, 1, 2])
        >>> out = retromae_loss(z, y, z, y)
        >>> round(float(out.total), 4)  # 2 * log(5)
        3.2189
    """
    enc = mlm_loss(encoder_logits, encoder_labels, name="retromae/encoder_mlm")
    dec = mlm_loss(decoder_logits, decoder_labels, name="retromae/decoder")
    return LossOutput(total=enc.total + dec.total, parts={**enc.parts, **dec.parts})
