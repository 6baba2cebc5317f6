"""Where the tests find the shared real data (``$EMBFORGE_SHARED_DATA``, set by tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

#: the ``shared/data`` folder beside the repository (README there lists the sets)
SHARED_DATA = Path(
    os.environ.get("EMBFORGE_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
)
