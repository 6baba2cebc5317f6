"""Masked-language-modelling loss (BERT's MLM; the first stage of Arctic-Embed).

Siblings: :mod:`embforge.losses.retromae` adds RetroMAE's decoder
reconstruction to this encoder-side loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embforge.types import LossOutput

__all__ = ["IGNORE_INDEX", "mlm_loss"]

IGNORE_INDEX = -100


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, name: str = "mlm") -> LossOutput:
    """Mean cross-entropy over the labelled (masked) positions.

    Devlin et al. 2019, "BERT". Positions whose label is ``-100`` are ignored.
    ``logits`` may hold only the labelled positions (``(N, V)`` with ``labels``
    ``(N,)``), which saves the vocabulary projection of every other token.

    Args:
        logits: (B, T, V) or (N, V) scores over the vocabulary.
        labels: (B, T) or (N,) original token ids, ``-100`` where not predicted.
        name: key of the part in ``LossOutput.parts``.

    Returns:
        ``LossOutput(total, parts={name: total})``; 0 (with grad) when nothing is labelled.

    Example:
        >>> import torch
        >>> out = mlm_loss(torch.zeros(1, 2, 4), torch.tensor([[1, -100]]))
        >>> round(float(out.total), 4)  # log(4): uniform over 4 tokens
        1.3863
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    if bool((flat_labels != IGNORE_INDEX).any()):
        loss = F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX)
    else:
        loss = flat_logits.sum() * 0.0
    return LossOutput(total=loss, parts={name: loss.detach()})
