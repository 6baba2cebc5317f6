"""Where a single client's request time goes inside `embforge serve` (issue 19's p50 target).

Runs embforge's app (``create_app``) over the exported int8 MiniLM in a server process whose
middleware, service, batcher, encoder and JSON rendering are timestamped, drives it with
bench/serve.py's load generator at 1 client, and prints the client's p50 and the median of each
phase inside the server. ``--encoder busy`` replaces the encode with a 0.9 ms busy loop, so the
framework's own cost is measured without ONNX Runtime's run-to-run noise.

    flock -x /tmp/embforge-bench.lock nice -n -10 .venv/bin/python bench/serve_phases.py --encoder busy
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import serve as bench_serve  # noqa: E402  # bench/serve.py: server process and load generator

ONNX_DIR = Path(__file__).parent / ".cache" / "minilm-onnx-int8"
ORDER = [
    "mw_in",
    "svc_in",
    "sub_in",
    "bat_in",
    "enc_in",
    "enc_out",
    "fin",
    "svc_out",
    "rj_in",
    "rj_out",
    "mw_out",
]


def _instrument(stamps: dict, rows: list) -> None:
    """Wrap the server's steps so each request leaves one row of timestamps (c=1: one at a time)."""
    import embforge.serve.app as app_mod
    import embforge.serve.batcher as batcher_mod
    import embforge.serve.service as service_mod

    def stamp(key: str) -> None:
        stamps[key] = time.perf_counter()

    def around(owner, name: str, key_in: str, key_out: str | None = None) -> None:
        f = getattr(owner, name)

        @functools.wraps(f)
        async def wrapped(*a, **kw):
            stamp(key_in)
            try:
                return await f(*a, **kw)
            finally:
                if key_out:
                    stamp(key_out)

        setattr(owner, name, wrapped)

    around(service_mod.EmbeddingService, "embeddings", "svc_in", "svc_out")
    around(batcher_mod.DynamicBatcher, "submit", "sub_in")
    around(batcher_mod.DynamicBatcher, "_encode", "bat_in")
    inline = batcher_mod.DynamicBatcher._encode_inline

    def inline_stamped(self, batch):  # a lone text on an idle server: encoded on the loop's thread
        stamp("bat_in")
        return inline(self, batch)

    batcher_mod.DynamicBatcher._encode_inline = inline_stamped
    around(app_mod, "render_json", "rj_in", "rj_out")
    finish = batcher_mod.DynamicBatcher._finish

    def finished(self, item, row=None, exc=None):
        stamp("fin")
        return finish(self, item, row, exc)

    batcher_mod.DynamicBatcher._finish = finished
    call = app_mod._GuardAndMeasure.__call__

    async def measured(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await call(self, scope, receive, send)
        stamps.clear()
        stamp("mw_in")
        await call(self, scope, receive, send)
        stamp("mw_out")
        if set(ORDER) <= set(stamps):
            rows.append(dict(stamps))

    app_mod._GuardAndMeasure.__call__ = measured


def server(port: int, encoder: str, threads: int, out: str) -> None:
    """The instrumented server process (until SIGTERM; phases written to ``out`` every 500 requests)."""
    import torch
    import uvicorn

    from embforge.model import Encoder
    from embforge.serve import ServeConfig, create_app
    from embforge.serve.protocol import http_protocol

    stamps: dict[str, float] = {}
    rows: list[dict] = []
    _instrument(stamps, rows)
    torch.set_num_threads(threads)
    real = Encoder.from_pretrained(str(ONNX_DIR), heads=("dense",), backend="onnx")

    class Timed:
        tokenizer, config, heads = real.tokenizer, real.config, ("dense",)

        def encode(self, texts, **kw):
            stamps["enc_in"] = time.perf_counter()
            if encoder == "busy":
                end = time.perf_counter() + 0.0009
                while time.perf_counter() < end:
                    pass
            out_ = real.encode(texts, heads=("dense",)) if encoder == "real" else busy_rows(len(texts))
            stamps["enc_out"] = time.perf_counter()
            if len(rows) % 500 == 499:
                Path(out).write_text(json.dumps(rows[-2000:]))
            return out_

    vec = real.encode(["warm-up"], heads=("dense",))

    def busy_rows(n: int):
        from embforge.types import Embeddings

        return Embeddings(dense=np.repeat(vec.dense, n, axis=0), num_tokens=np.full(n, 12))

    cfg = ServeConfig()
    app = create_app(Timed(), config=cfg)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                http=http_protocol(cfg, "auto"))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", choices=["busy", "real"], default="busy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--server", nargs=3, help=argparse.SUPPRESS)  # internal: port encoder out
    args = ap.parse_args()
    if args.server:
        port, encoder, out = args.server
        server(int(port), encoder, args.threads, out)
        return
    if not (ONNX_DIR / "onnx").is_dir():
        sys.exit(f"{ONNX_DIR} missing: run bench/serve.py --piece embforge-onnx-int8 once (it exports it)")
    print(bench_serve.cpu_flags())
    port = bench_serve.free_port()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--threads", str(args.threads), "--server", str(port), args.encoder, out]
    srv = bench_serve.Server(cmd, port, dict(os.environ))
    try:
        srv.wait_ready(health_path="/healthz")
        bench_serve.run_loadgen(
            srv.url, "/v1/embeddings", 1, argparse.Namespace(seconds=2.0, max_requests=500)
        )
        for _ in range(args.reps):
            r = bench_serve.run_loadgen(srv.url, "/v1/embeddings", 1,
                                        argparse.Namespace(seconds=args.seconds, max_requests=100000))  # fmt: skip
            print(f"client p50 {r['p50']:.3f} ms  p99 {r['p99']:.2f} ms  ({r['ok']} requests)")
    finally:
        srv.stop()
    rows = json.loads(Path(out).read_text())
    os.unlink(out)
    print(f"median ms per phase inside the server ({len(rows)} requests):")
    for a, b in zip(ORDER, ORDER[1:]):
        print(f"  {a:>7} -> {b:<7} {1000 * np.median([r[b] - r[a] for r in rows]):.3f}")
    print(f"  in the server      {1000 * np.median([r['mw_out'] - r['mw_in'] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
