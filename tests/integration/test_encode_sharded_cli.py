"""`embforge encode CORPUS -o DIR/`: sharded writer; kill -9 then resume; torchrun with 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.data.shards import iter_shards, read_manifest
from embforge.errors import DataError
from helpers.torchrun import torchrun_embforge

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
WORDS = "the dog runs fast across a green field while birds sing over quiet old river banks".split()


def _corpus(path: Path, n: int) -> Path:
    lines = [
        json.dumps({"_id": f"d{i}", "text": " ".join(WORDS[: 3 + (i * 7) % 13] * (1 + i % 3))})
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _args(corpus: Path, out: Path, model: Path, shard: int) -> list[str]:
    return [
        "encode",
        str(corpus),
        "-o",
        str(out),
        "--model",
        str(model),
        "--heads",
        "dense,sparse,multivector",
        "--shard-size",
        str(shard),
        "--threads",
        "1",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}


def test_kill_9_then_resume_loses_nothing_and_writes_nothing_twice(tiny_m3_path, tiny_m3, tmp_path):
    corpus, out = _corpus(tmp_path / "c.jsonl", 600), tmp_path / "shards"
    cmd = [sys.executable, "-m", "embforge.cli.app", *_args(corpus, out, tiny_m3_path, 10)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.glob("shard-*.parquet"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the job finished before the kill; make the corpus bigger"
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert len(done_before) >= 3

    r = CliRunner().invoke(app, _args(corpus, out, tiny_m3_path, 10))
    assert r.exit_code == 0, r.output
    assert f"{len(done_before)} already done" in r.output
    for name, mtime in done_before.items():  # finished shards were not written again
        assert (out / name).stat().st_mtime_ns == mtime
    m = read_manifest(out)
    assert m["rows"] == 600 and len(m["shards"]) == 60
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left
    ids = [i for s in iter_shards(out, heads=["dense"], payload=False) for i in s.ids]
    assert ids == [f"d{i}" for i in range(600)]  # nothing lost, nothing twice, input order
    texts = [json.loads(x)["text"] for x in corpus.read_text().splitlines()]
    first = next(iter_shards(out))
    np.testing.assert_allclose(first.embeddings.dense, tiny_m3.encode(texts[:10]).dense, atol=1e-5)


def test_directory_output_switches_to_shards_and_old_outputs_still_work(tiny_m3_path, tmp_path):
    corpus = _corpus(tmp_path / "c.jsonl", 7)
    r = CliRunner().invoke(
        app,
        [
            "encode",
            str(corpus),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_m3_path),
            "--heads",
            "dense",
        ],
    )
    assert r.exit_code == 0, r.output
    assert read_manifest(tmp_path / "out")["shard_size"] == 10_000
    r = CliRunner().invoke(
        app, ["encode", str(corpus), "-o", str(tmp_path / "d.npy"), "--model", str(tiny_m3_path)]
    )
    assert r.exit_code == 0 and np.load(tmp_path / "d.npy").shape[0] == 7
    r = CliRunner().invoke(
        app,
        [
            "encode",
            str(corpus),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_m3_path),
            "--heads",
            "dense,sparse",
        ],
    )
    assert isinstance(r.exception, DataError) and "another job (heads" in str(r.exception)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(tiny_m3_path, tmp_path):
    corpus = _corpus(tmp_path / "c.jsonl", 90)
    one = subprocess.run(
        [sys.executable, "-m", "embforge.cli.app", *_args(corpus, tmp_path / "one", tiny_m3_path, 16)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun_embforge(_args(corpus, tmp_path / "two", tiny_m3_path, 16), env=_env())
    assert two.returncode == 0, two.stderr[-3000:]
    assert "rank 0/2" in two.stderr and "rank 1/2" in two.stderr
    files = sorted(p.name for p in (tmp_path / "one").glob("shard-*.parquet"))
    assert len(files) == 6
    for name in files:  # byte-identical shards
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert read_manifest(tmp_path / "one")["shards"] == read_manifest(tmp_path / "two")["shards"]
