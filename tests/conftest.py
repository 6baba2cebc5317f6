"""Shared pytest fixtures (session-scoped, offline, fixed seeds). Add yours below, keep them fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _shared_data() -> Path:
    """The ``shared/data`` folder beside the repository (or above it, for a git worktree)."""
    repo = Path(__file__).resolve().parents[1]
    for base in [repo, *repo.parents]:
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return repo.parent / "shared" / "data"


# Library code takes the shared data folder as an argument or from this variable, never from a
# machine path written in src/ (model/builders.py reads it for the tiny test models' corpora).
os.environ.setdefault("EMBFORGE_SHARED_DATA", str(_shared_data()))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``$EMBFORGE_SHARED_DATA``): corpora for tiny tokenizers and demos."""
    return Path(os.environ["EMBFORGE_SHARED_DATA"])


@pytest.fixture(scope="session")
def tiny_m3_path():
    """A tiny random XLM-R (hidden 32, 2 layers, unigram vocab 4000) in the BGE-M3 layout.

    Built once per machine and cached under $TMPDIR/embforge-test-cache (read-only use, please:
    copy it with shutil.copytree before modifying files).
    """
    from helpers.tiny_m3 import tiny_m3_checkpoint

    return tiny_m3_checkpoint()


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


def pytest_sessionstart(session) -> None:
    """Say so first when the disk is nearly full: otherwise hundreds of tests fail with ENOSPC and
    nothing names the cause (the suite needs a few hundred MB at a time; a passed test's folder is
    deleted, a failed one's kept: see tmp_path_retention_policy in pyproject.toml)."""
    import shutil
    import tempfile

    tmp = tempfile.gettempdir()
    free = shutil.disk_usage(tmp).free / 2**30
    if free < 2:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = (
            f"embforge tests: only {free:.2f} GiB free in {tmp}; tests that save models may fail with ENOSPC"
        )
        if reporter is not None:
            reporter.write_line("WARNING " + msg, yellow=True, bold=True)
