"""Shared pytest fixtures (session-scoped, offline, fixed seeds). Add yours below, keep them fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_m3_path():
    """A tiny random XLM-R (hidden 32, 2 layers, unigram vocab 4000) in the BGE-M3 layout.

    Built once per machine and cached under $TMPDIR/embforge-test-cache (read-only use, please:
    copy it with shutil.copytree before modifying files).
    """
    from embforge.model.builders import cached_tiny_m3_checkpoint

    return cached_tiny_m3_checkpoint()


@pytest.fixture(scope="session")
def tiny_m3(tiny_m3_path):
    """``Encoder`` loaded from ``tiny_m3_path`` with all three heads (shared: do not train it in place)."""
    from embforge.model.encoder import Encoder

    return Encoder.from_pretrained(str(tiny_m3_path))


@pytest.fixture(scope="session")
def minilm():
    """The bundled all-MiniLM-L6-v2 ``Encoder`` (dense head only)."""
    from embforge.model.encoder import Encoder

    return Encoder.from_pretrained(heads=("dense",))
