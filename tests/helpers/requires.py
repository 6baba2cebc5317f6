"""Optional test dependencies that must never be skipped silently.

``require_module`` / ``require_path`` replace ``pytest.importorskip`` / ``skipif``: on a
developer machine a missing reference library or data folder is a skip whose reason says how
to get it; under ``CI=true`` (or ``EMBFORGE_REFERENCE_ENV=1``, set by ``make test-reference``)
it is a failure, so CI never reports green while a parity check did not run.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest


def strict() -> bool:
    """True where a missing reference must fail (CI, the pinned reference environment)."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("EMBFORGE_REFERENCE_ENV") == "1"


def missing(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail under CI / in the reference env."""
    if strict():
        pytest.fail(f"{reason} (a skip is a failure under CI=true)", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, how: str) -> ModuleType:
    """Import ``name`` or skip/fail (see the module docstring); ``how`` says how to install it."""
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - FlagEmbedding fails with AttributeError/ImportError under transformers 5
        missing(f"cannot import {name} ({type(e).__name__}: {str(e)[:120]}); {how}")
        raise  # unreachable: missing() raises


def require_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it exists, else skip/fail naming ``what`` it is."""
    p = Path(path)
    if not p.exists():
        missing(f"{p} ({what}) is not on this machine")
    return p
