"""Build a small XLM-R-style model from scratch (named sizes) for a freshly trained tokenizer.

The sizes follow the BERT/XLM-R family ("tiny" to "large", large = XLM-R large,
the BGE-M3 backbone); all use XLM-R's position numbering (``pad + 1``), so
``max_length`` tokens need ``max_length + 2`` position rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from embforge.errors import ConfigError

__all__ = ["XLMRSize", "XLMR_SIZES", "xlmr_config", "build_masked_lm"]


@dataclass(frozen=True)
class XLMRSize:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


XLMR_SIZES: dict[str, XLMRSize] = {
    "xlmr-tiny": XLMRSize(64, 2, 2, 256),  # tests, CPU smoke runs
    "xlmr-mini": XLMRSize(128, 4, 2, 512),
    "xlmr-small": XLMRSize(256, 4, 4, 1024),
    "xlmr-medium": XLMRSize(512, 8, 8, 2048),
    "xlmr-base": XLMRSize(768, 12, 12, 3072),  # XLM-R base
    "xlmr-large": XLMRSize(1024, 24, 16, 4096),  # XLM-R large (BGE-M3's backbone)
}


def xlmr_config(size: str, tokenizer=None, vocab_size: int | None = None, max_length: int = 512, **overrides):
    """An ``XLMRobertaConfig`` of a named size whose vocabulary and special ids match ``tokenizer``.

    Args:
        size: one of ``XLMR_SIZES``.
        tokenizer: the tokenizer the model will use (vocab size, pad/bos/eos ids).
        vocab_size: instead of ``tokenizer``.
        max_length: longest input in tokens (the table gets ``max_length + 2`` rows).
        overrides: any other ``XLMRobertaConfig`` field.
    """
    from transformers import XLMRobertaConfig

    if size not in XLMR_SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose from: {', '.join(XLMR_SIZES)}")
    if tokenizer is None and vocab_size is None:
        raise ConfigError("give a tokenizer or vocab_size to size the embedding table")
    ids = {}
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        ids = {
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id
            if tokenizer.bos_token_id is not None
            else tokenizer.cls_token_id,
            "eos_token_id": tokenizer.eos_token_id
            if tokenizer.eos_token_id is not None
            else tokenizer.sep_token_id,
        }
    pad = ids.get("pad_token_id", 1)
    return XLMRobertaConfig(
        vocab_size=int(vocab_size),
        max_position_embeddings=int(max_length) + int(pad) + 1,
        type_vocab_size=1,
        **asdict(XLMR_SIZES[size]),
        **{**ids, **overrides},
    )


def build_masked_lm(
    size: str,
    tokenizer=None,
    vocab_size: int | None = None,
    max_length: int = 512,
    seed: int = 0,
    **overrides,
):
    """A randomly initialised ``XLMRobertaForMaskedLM`` of a named size (seeded)."""
    import torch
    from transformers import XLMRobertaForMaskedLM

    config = xlmr_config(size, tokenizer, vocab_size, max_length, **overrides)
    torch.manual_seed(int(seed))
    return XLMRobertaForMaskedLM(config)
