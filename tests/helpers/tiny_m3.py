"""The test suite's tiny BGE-M3-layout model, built once per machine with the fixed tokenizer file."""

from __future__ import annotations

from pathlib import Path

#: the tiny models' tokenizer (tests/data/tiny-unigram-tokenizer/README.md says why it is a file)
TINY_TOKENIZER = Path(__file__).resolve().parents[1] / "data" / "tiny-unigram-tokenizer"


def tiny_m3_checkpoint() -> Path:
    """``cached_tiny_m3_checkpoint`` (hidden 32, 2 layers, seeded weights) with ``TINY_TOKENIZER``:
    the same model on every clone and CI run."""
    from embforge.model.builders import cached_tiny_m3_checkpoint

    return cached_tiny_m3_checkpoint(tokenizer_dir=str(TINY_TOKENIZER))
