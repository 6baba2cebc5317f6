from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.errors import DataError

pytestmark = pytest.mark.integration


def test_encode_jsonl_all_heads_and_text_to_npy(tiny_m3_path, tiny_m3, tmp_path):
    src = tmp_path / "docs.jsonl"
    src.write_text(
        '{"_id": "d1", "text": "the dog runs"}\n\n{"_id": "d2", "text": "재판부는 검찰의"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(
        app,
        [
            "encode",
            str(src),
            "-o",
            str(out),
            "--model",
            str(tiny_m3_path),
            "--heads",
            "dense,sparse,multivector",
            "--dim",
            "16",
        ],
    )
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    want = tiny_m3.encode(
        ["the dog runs", "재판부는 검찰의"], heads=("dense", "sparse", "multivector"), dim=16
    )
    assert [x["id"] for x in recs] == ["d1", "d2"]
    np.testing.assert_allclose(recs[1]["dense"], want.dense[1], atol=1e-6)
    assert {int(k) for k in recs[0]["sparse"]} == set(want.sparse.row(0))
    np.testing.assert_allclose(recs[0]["multivector"], want.multivector[0], atol=1e-6)

    txt = tmp_path / "lines.txt"
    txt.write_text("the dog runs\n재판부는 검찰의\n", encoding="utf-8")
    npy = tmp_path / "d.npy"
    r = CliRunner().invoke(app, ["encode", str(txt), "-o", str(npy), "--model", str(tiny_m3_path)])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(
        np.load(npy), tiny_m3.encode(["the dog runs", "재판부는 검찰의"]).dense, atol=1e-6
    )


def test_encode_bad_inputs_name_the_line(tiny_m3_path, tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\n{"text": ""}\n', encoding="utf-8")
    r = CliRunner().invoke(
        app, ["encode", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", str(tiny_m3_path)]
    )
    assert isinstance(r.exception, DataError)
    assert "bad.jsonl:2: needs a non-empty string field 'text'" in str(r.exception)
    r = CliRunner().invoke(app, ["encode", str(src), "-o", str(tmp_path / "o.npy"), "--heads", "sparse"])
    assert ".npy holds only the dense head" in str(r.exception)


def test_encode_cli_error_exit_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "embforge.cli.app",
            "encode",
            str(tmp_path / "missing.txt"),
            "-o",
            str(tmp_path / "x.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2
    assert "error: input file" in p.stderr and "does not exist" in p.stderr


def test_demo_runs_on_the_tiny_model(tiny_m3_path):
    from embforge.demo import run_demo

    lines: list[str] = []
    res = run_demo(str(tiny_m3_path), max_queries=10, echo=lines.append)
    assert set(res) == {"dense", "sparse", "multivector", "hybrid"}
    assert all(0.0 <= m["mrr@10"] <= 1.0 for m in res.values())
    text = "\n".join(lines)
    assert "240 passages, 10 questions" in text and "example searches (hybrid)" in text
