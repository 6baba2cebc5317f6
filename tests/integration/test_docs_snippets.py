"""Every fenced ``bash`` / ``python`` block of README.md and docs/*.md runs as written (issue 18).

Each block runs in a fresh temporary folder (holding a copy of the checkout's ``configs/``, which
`embforge train` reads), as a user would run it: bash blocks with
``bash -e``, python blocks with ``python`` (the `embforge` and `python` of this interpreter's
environment first on PATH, this checkout's ``src`` on PYTHONPATH). Demo data comes from the
package (``embforge.resources.demo_path``), never from ``src/...`` paths.

A block may carry one marker, the HTML comment on the line right above its fence:

* ``<!-- snippet: slow -->``: longer than the default suite allows (e.g. ``make demo``); it
  runs in ``make test-slow`` (``pytest -m slow``).
* ``<!-- snippet: server ARGS -->``: a client of ``embforge serve`` (curl, the openai package):
  the test starts ``embforge serve ARGS`` on a free port (the block's ``127.0.0.1:8000`` is
  pointed at it; nothing else of the block changes), runs the block, stops the server. Slow.
* ``<!-- snippet: shared -->``: reads ``shared/data/...``, the project's data folder beside the
  checkout (``../shared``, which a user's clone does not have): the test links it into the
  temporary folder; where it is absent the block is skipped (a failure under ``CI=true``).
* ``<!-- snippet: skip REASON -->``: cannot run on a CI machine at all, for the REASON given
  (needs network, GPUs, a running server, data that is not shipped, or is an API outline
  rather than a program). The test reports it as skipped with its reason.

See docs/cli.md ("Docs that run") for the rules.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers.requires import require_path

ROOT = Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*snippet:\s*(slow|skip|server|shared)\s*(.*?)\s*-->\s*$")
SHARED = ROOT.parent / "shared"
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
            server = None
            if mark and mark.group(1) in ("slow", "server"):
                marks.append(pytest.mark.slow)
                server = mark.group(2) if mark.group(1) == "server" else None
            elif mark and mark.group(1) == "skip":
                marks.append(pytest.mark.skip(reason=mark.group(2) or "(no reason given)"))
            shared = bool(mark) and mark.group(1) == "shared"
            sid = f"{path.relative_to(ROOT)}:{line}"
            out.append(pytest.param(m.group(1), m.group(2), server, shared, id=sid, marks=marks))
    return out


SNIPPETS = snippets()


def test_every_skip_names_its_reason():
    for path in FILES:
        for m in MARKER.finditer(path.read_text(encoding="utf-8")):
            if m.group(1) == "skip":
                assert len(m.group(2)) > 10, f"{path.name}: a skip marker needs a reason: {m.group(0)}"


def test_snippets_found():
    assert len(SNIPPETS) > 20


@contextmanager
def _server(args: str, env: dict, cwd: Path):
    """``embforge serve ARGS`` on a free loopback port until the block is done; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = ["embforge", "serve", *args.split(), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(
                        f"embforge serve {args} did not start:\n{proc.stderr.read()[-3000:]}"
                    ) from None
                time.sleep(1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("lang,code,server,shared", SNIPPETS)
def test_snippet_runs(lang, code, server, shared, tmp_path):
    if shared:  # skipped where ../shared is absent, a failure under CI=true
        require_path(SHARED / "data", "the project's shared data beside the checkout, which this block reads")
        (tmp_path / "shared").symlink_to(SHARED)
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
    if server is not None:
        with _server(server, env, tmp_path) as port:
            code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if lang == "bash":  # an HTTP error (e.g. a missing API key) fails the block
                code = 'curl() { command curl --fail-with-body "$@"; }\n' + code
            res = _run(lang, code, env, tmp_path)
    else:
        res = _run(lang, code, env, tmp_path)
    assert res.returncode == 0, (
        f"exit {res.returncode}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}"
    )


def _run(lang: str, code: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    cmd = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
