"""pytest setup for the doctests of src/ (``make test`` runs ``pytest --doctest-modules src/embforge``).

Offline like tests/: examples use the bundled all-MiniLM-L6-v2 and tiny random models, never a
download. Not part of the installed package (setuptools installs src/embforge only).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _doctest_in_tmp_path(request, tmp_path, monkeypatch):
    """Run each example in its own empty folder, so files it writes never land in the checkout."""
    if request.node.__class__.__name__ == "DoctestItem":
        monkeypatch.chdir(tmp_path)
