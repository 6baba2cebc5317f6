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


def test_progress_flags_reach_encode_and_train(tmp_path, capsys):
    """--progress/--no-progress on eval/train/demo (issue 18): encode's default follows the command's
    choice; `train` turns the loop's bar off when stderr is not a terminal unless told otherwise."""
    from typer.testing import CliRunner

    from embforge.cli.app import app
    from embforge.model import encode as enc_mod

    try:
        enc_mod.set_progress_default(True)
        assert enc_mod.PROGRESS_DEFAULT[0] is True
        enc_mod.set_progress_default(None)
        assert enc_mod.PROGRESS_DEFAULT[0] is None
    finally:
        enc_mod.set_progress_default(None)
    runner = CliRunner()
    from pathlib import Path

    cfg = str(Path(__file__).resolve().parents[3] / "configs" / "m3-finetune.yaml")
    plain = runner.invoke(app, ["train", cfg, "--check", "model.path=null", "data.train_files=[x.jsonl]"])
    assert plain.exit_code == 0, plain.output
    assert "progress: false" in plain.output  # not a terminal: no bar
    on = runner.invoke(app, ["train", cfg, "--check", "--progress", "data.train_files=[x.jsonl]"])
    assert on.exit_code == 0 and "progress: true" in on.output
    kept = runner.invoke(
        app, ["train", cfg, "--check", "--no-progress", "loop.progress=true", "data.train_files=[x.jsonl]"]
    )
    assert kept.exit_code == 0 and "progress: true" in kept.output  # an explicit override wins
