"""Token masking for MLM and RetroMAE (pure torch, seeded by a ``torch.Generator``).

* :func:`mask_tokens` - BERT-style masking of an exact share of the maskable
  tokens of each text (80% ``<mask>``, 10% random token, 10% unchanged).
* :func:`enhanced_decoding_mask` - RetroMAE's position-specific attention mask:
  each position ``i`` sees its own random sample ``s(i)`` of the context, which
  always holds the first position (the sentence embedding ``h``) and never ``i``.

Shape letters: B batch, T tokens, V vocab.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from embforge.errors import ConfigError

__all__ = ["maskable_positions", "mask_tokens", "enhanced_decoding_mask", "check_rate"]

IGNORE_INDEX = -100


def check_rate(name: str, rate: float, low: float = 0.0, high: float = 1.0) -> float:
    """Validate a masking rate (user input) and return it as float."""
    rate = float(rate)
    if not (low <= rate < high):  # also catches NaN
        raise ConfigError(f"{name}={rate} is out of range; use a value in [{low}, {high}) (e.g. 0.3)")
    return rate


def maskable_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Iterable[int]
) -> torch.Tensor:
    """(B, T) bool: real (non-padding) tokens that are not special tokens."""
    special = torch.tensor(sorted(set(int(i) for i in special_ids)), dtype=input_ids.dtype)
    is_special = torch.isin(input_ids, special.to(input_ids.device))
    return attention_mask.bool() & ~is_special


def _select_exact(maskable: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """(B, T) bool: ``max(1, round(rate * n_b))`` random maskable positions of each row b."""
    n_maskable = maskable.sum(dim=1)  # (B,)
    n_pick = torch.clamp(torch.round(n_maskable.float() * rate), min=1).long()
    n_pick = torch.minimum(n_pick, n_maskable)
    scores = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    scores = scores.masked_fill(~maskable, 2.0)  # non-maskable sort last
    rank = scores.argsort(dim=1).argsort(dim=1)
    return rank < n_pick[:, None]


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    rate: float,
    mask_token_id: int,
    random_token_ids: torch.Tensor,
    generator: torch.Generator | None = None,
    replace_probs: tuple[float, float] = (0.8, 0.1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``rate`` of each text's maskable tokens, BERT style.

    Of the chosen positions, ``replace_probs[0]`` become ``<mask>``,
    ``replace_probs[1]`` a random token drawn from ``random_token_ids``, the
    rest stay unchanged; all chosen positions are labelled. At least one token
    per text with a maskable token is chosen.

    Args:
        input_ids: (B, T) token ids.
        maskable: (B, T) bool, see :func:`maskable_positions`.
        rate: share of the maskable tokens to choose, in [0, 1).
        mask_token_id: id of the ``<mask>`` token.
        random_token_ids: (K,) ids that random replacement may draw (no specials).
        generator: torch random generator (for reproducible masks).
        replace_probs: (p_mask, p_random); unchanged = 1 - p_mask - p_random.

    Returns:
        ``(masked_ids (B, T), labels (B, T))`` with labels ``-100`` where not chosen.

    Example:
        >>> ids = torch.tensor([[0, 5, 6, 7, 8, 2]])
        >>> keep = maskable_positions(ids, torch.ones_like(ids), [0, 2])
        >>> g = torch.Generator().manual_seed(0)
        >>> masked, labels = mask_tokens(ids, keep, 0.5, 4, torch.arange(5, 9), g)
        >>> int((labels != -100).sum())
        2
    """
    chosen = _select_exact(maskable, rate, generator)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    to_mask = chosen & (u < replace_probs[0])
    to_random = chosen & (u >= replace_probs[0]) & (u < replace_probs[0] + replace_probs[1])
    pick = torch.randint(len(random_token_ids), input_ids.shape, generator=generator, device=input_ids.device)
    random_ids = random_token_ids.to(input_ids.device)[pick]
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_ids, masked)
    return masked, labels


def enhanced_decoding_mask(
    attention_mask: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """RetroMAE's position-specific attention mask for enhanced decoding.

    Row ``i`` (a query position) is the context ``s(i)`` it may attend to in
    the content stream ``[h, e_1+p_1, ..., e_N+p_N]``: each other real position
    is dropped independently with probability ``rate`` (the decoder-side
    masking, 50-70%), the first position (``h``) is always kept, and ``i``
    itself never is. Every row is sampled on its own. Row 0 (the ``h`` slot,
    not reconstructed) and padding rows see only position 0, so no softmax row
    is empty.

    Args:
        attention_mask: (B, T) 1 for real tokens, right padded.
        rate: share of the context each position does NOT see, in [0, 1).
        generator: torch random generator.

    Returns:
        (B, T, T) bool, ``True`` = key position j is visible to query position i.

    Example:
        >>> m = enhanced_decoding_mask(torch.ones(1, 6), 0.5, torch.Generator().manual_seed(0))
        >>> bool(m[0, 1:, 0].all()), bool(m[0].diagonal()[1:].any())
        (True, False)
    """
    B, T = attention_mask.shape
    real = attention_mask.bool()
    keep = torch.rand((B, T, T), generator=generator, device=attention_mask.device) >= rate
    keep &= real[:, None, :]  # never attend to padding
    eye = torch.eye(T, dtype=torch.bool, device=attention_mask.device)
    keep &= ~eye  # never itself
    keep[:, :, 0] = True  # always the first position (h)
    only_h = torch.zeros(T, dtype=torch.bool, device=attention_mask.device)
    only_h[0] = True
    not_target = ~real
    not_target[:, 0] = True  # the h slot itself is not reconstructed
    keep = torch.where(not_target[:, :, None], only_h.expand(B, T, T), keep)
    return keep
