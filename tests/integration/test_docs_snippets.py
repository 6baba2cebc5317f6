"""Every fenced ``bash`` / ``python`` block of README.md and docs/*.md runs as written (issue 18).

Each block runs in a fresh temporary folder (holding a copy of the checkout's ``configs/``, which
`embforge train` reads), as a user would run it: bash blocks with
``bash -e``, python blocks with ``python`` (the `embforge` and `python` of this interpreter's
environment first on PATH, this checkout's ``src`` on PYTHONPATH). Demo data comes from the
package (``embforge.resources.demo_path``), never from ``src/...`` paths.

A block may carry one marker, the HTML comment on the line right above its fence:

* ``<!-- snippet: slow -->``: longer than the default suite allows (e.g. ``make demo``); it
  runs in ``make test-slow`` (``pytest -m slow``).
* ``<!-- snippet: skip REASON -->``: cannot run on a CI machine at all, for the REASON given
  (needs network, GPUs, a running server, data that is not shipped, or is an API outline
  rather than a program). The test reports it as skipped with its reason.

See docs/cli.md ("Docs that run") for the rules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*snippet:\s*(slow|skip)\s*(.*?)\s*-->\s*$")
TIMEOUT_S = 900


def snippets() -> list:
    """pytest params: one per fenced bash/python block, marked slow / skipped as its marker says."""
    out = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            line = text[: m.start()].count("\n") + 1
            above = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARKER.search(above)
            marks = []
            if mark and mark.group(1) == "slow":
                marks.append(pytest.mark.slow)
            elif mark:
                marks.append(pytest.mark.skip(reason=mark.group(2) or "(no reason given)"))
            sid = f"{path.relative_to(ROOT)}:{line}"
            out.append(pytest.param(m.group(1), m.group(2), id=sid, marks=marks))
    return out


SNIPPETS = snippets()


def test_every_skip_names_its_reason():
    for path in FILES:
        for m in MARKER.finditer(path.read_text(encoding="utf-8")):
            if m.group(1) == "skip":
                assert len(m.group(2)) > 10, f"{path.name}: a skip marker needs a reason: {m.group(0)}"


def test_snippets_found():
    assert len(SNIPPETS) > 20


@pytest.mark.parametrize("lang,code", SNIPPETS)
def test_snippet_runs(lang, code, tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    shutil.copytree(
        ROOT / "configs", tmp_path / "configs"
    )  # a checkout's recipes, as `embforge train` reads them
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "src"),
        "MPLBACKEND": "Agg",
    }
    cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, (
        f"exit {res.returncode}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}"
    )
