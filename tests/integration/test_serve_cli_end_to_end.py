"""`embforge serve` as a real process: start on loopback, answer, refuse, stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_cli_end_to_end(tiny_m3_path, tiny_m3):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "EMBFORGE_API_KEY": "k3y"}
    cmd = [
        sys.executable,
        "-m",
        "embforge.cli.app",
        "serve",
        "--model",
        str(tiny_m3_path),
        "--port",
        str(port),
        "--model-name",
        "tiny",
        "--max-inputs",
        "4",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - t0 < 120, "server did not come up"
            time.sleep(0.2)
        auth = {"Authorization": "Bearer k3y"}
        assert httpx.post(url + "/v1/embeddings", json={"input": "x"}).status_code == 401
        r = httpx.post(
            url + "/v1/embeddings",
            headers=auth,
            json={"input": ["hello world"], "model": "tiny", "sparse": True},
        )
        assert r.status_code == 200, r.text
        ref = tiny_m3.encode(["hello world"], heads=("dense", "sparse"))
        np.testing.assert_allclose(np.float32(r.json()["data"][0]["embedding"]), ref.dense[0], atol=1e-5)
        assert {int(k) for k in r.json()["data"][0]["sparse_embedding"]} == set(ref.sparse.row(0))
        r = httpx.post(url + "/v1/embeddings", headers=auth, json={"input": ["a"] * 5})
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_inputs"
        assert "embforge_requests_total" in httpx.get(url + "/metrics").text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stdout.read()
