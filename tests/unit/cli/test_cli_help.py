"""`embforge --help` stays fast: the CLI imports heavy modules inside commands, never at import time.

This is the one exemption from "imports at module top" (docs/architecture.md); the test keeps it
honest by listing what `--help` loads in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
sys.argv = ["embforge", "--help"]
from embforge.cli.app import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "embforge"))))
"""


def test_help_loads_no_model_code():
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "transformers")]
    heavy = [m for m in loaded if m.startswith("embforge.") and not m.startswith("embforge.cli")]
    assert set(heavy) <= {"embforge.errors", "embforge.registry"}  # light, dependency-free modules
