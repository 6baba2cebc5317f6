"""One truncation warning per command, with the total and the limit (issue 18): `embforge eval`
encodes queries and documents in separate calls, each of which used to warn on its own."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from embforge.cli._common import truncation_summary
from embforge.cli.app import app
from embforge.resources import demo_path

pytestmark = pytest.mark.integration


def _truncation_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]


def test_eval_prints_one_truncation_warning_with_the_total(tiny_m3_path, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    args = ["eval", "-m", str(tiny_m3_path), "--beir", str(demo_path("xquad-de")), "--max-queries", "30"]
    args += ["--max-length", "16", "--heads", "dense", "--no-bm25", "--mrl-dims", "none", "--no-plots"]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    lines = _truncation_lines(caplog)
    assert len(lines) == 1, lines
    n_docs = sum(1 for line in (demo_path("xquad-de") / "corpus.jsonl").open() if line.strip())
    cut, _of, total = lines[0].split(" texts encoded by this command")[0].split()
    assert int(total) == 30 + n_docs  # queries and documents: two encode calls, one total
    assert int(cut) > n_docs  # every document and some queries were cut: both calls counted
    assert "max_length=16" in lines[0] and "--max-length" in lines[0]


def test_summary_counts_every_call_and_each_limit(tiny_m3, caplog):
    """In the Python API each encode call warns once; inside a command the calls add up."""
    caplog.set_level(logging.WARNING)
    long = ["a long text " * 20] * 3
    tiny_m3.encode(long, max_length=8, batch_size=1)
    assert len(_truncation_lines(caplog)) == 1  # one per call, not one per batch
    caplog.clear()
    with truncation_summary():
        tiny_m3.encode(long, max_length=8, batch_size=1)
        tiny_m3.encode(long + ["short"], max_length=16)
    (line,) = _truncation_lines(caplog)
    assert line.startswith("6 of 7 texts encoded by this command")
    assert "(3 at max_length=8, 3 at max_length=16)" in line
