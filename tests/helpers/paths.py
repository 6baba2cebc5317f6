"""Where the tests find the shared real data (``$EMBFORGE_SHARED_DATA``, set by tests/conftest.py),
and the repository's scripts (bench/, scripts/: files, not a package)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

#: the repository root
ROOT = Path(__file__).resolve().parents[2]

#: the ``shared/data`` folder beside the repository (README there lists the sets)
SHARED_DATA = Path(
    os.environ.get("EMBFORGE_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
)


def load_script(relpath: str, name: str) -> ModuleType:
    """The module of the repository file ``relpath`` (e.g. ``"bench/quality.py"``) as ``name``; its
    folder goes on ``sys.path`` first, so it imports its neighbours as it does when run."""
    path = ROOT / relpath
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
