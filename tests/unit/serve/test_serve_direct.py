"""The middleware's direct routes (``DirectRoute``: valid /v1/embeddings and /v1/search bodies
answered without FastAPI's request machinery) answer byte for byte what the FastAPI routes answer,
hand every body they cannot validate to FastAPI, and count in the same metrics."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from embforge.serve import ServeConfig, create_app
from embforge.serve.app import DirectRoute
from embforge.types import Hits

EMBEDDINGS = [
    {"input": "The cat sat on the mat."},
    {"input": ["one", "two words", "서울은 한국의 수도이다."], "encoding_format": "base64"},
    {"input": "hello", "dimensions": 8, "sparse": True, "multivector": True},
    {"input": ["a", "b"], "sparse": True, "sparse_tokens": True, "quantization": "int8"},
    {"input": "query text", "role": "query", "quantization": "binary", "model": "fake"},
    {"input": [[2023, 2003], [7592]]},
]
INVALID = [
    b'{"input": 1}',
    b'{"input": "x", "dimensions": "8"}',
    b'{"input": "x", "speling": true}',
    b'{"input": "x", "model": "other"}',
    b"not json",
    b"[]",
    b'{"input": "x", "dimensions": NaN}',
]
SEARCHES = [{"query": "cat"}, {"query": ["cat", "dog"], "k": 2}]


class DenseIndex:
    """Exact dense search over a few documents."""

    heads = ("dense",)

    def __init__(self, enc, docs):
        self.emb = enc.encode(docs, role="document", heads=self.heads).dense

    def search(self, q, k=10, weights=None):
        scores = q.dense @ self.emb.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return Hits(
            ids=[[f"doc-{j}" for j in row] for row in order],
            scores=[[float(scores[i, j]) for j in row] for i, row in enumerate(order)],
        )


@pytest.fixture(scope="module")
def app_and_url(fake_encoder_cls, minilm_tokenizer, module_server):
    enc = fake_encoder_cls(minilm_tokenizer)
    docs = ["the cat sat on the mat", "a dog barked", "stocks fell sharply", "cats and dogs"]
    index = DenseIndex(enc, docs)
    app = create_app(enc, index=index, config=ServeConfig(model_name="fake", max_inputs=8))
    return app, module_server(app)


def _both(app, url: str, path: str, body: bytes, headers: dict | None = None) -> tuple[httpx.Response, ...]:
    """The answer with the direct routes, then with them removed (FastAPI); the first response's
    ``took_direct`` says whether a direct route's handler ran."""
    headers = headers or {"Content-Type": "application/json"}
    direct = dict(app.state.direct_routes)
    ran = []

    def counted(route: DirectRoute) -> DirectRoute:
        async def handler(req):
            ran.append(req)
            return await route.handler(req)

        return DirectRoute(route.model, handler, route.route)

    app.state.direct_routes.update({p: counted(r) for p, r in direct.items()})
    with httpx.Client(base_url=url, timeout=30) as client:
        try:
            first = client.post(path, content=body, headers=headers)
            app.state.direct_routes.clear()
            second = client.post(path, content=body, headers=headers)
        finally:
            app.state.direct_routes.update(direct)
    first.took_direct = bool(ran)  # type: ignore[attr-defined]
    return first, second


VALID = [("/v1/embeddings", b) for b in EMBEDDINGS] + [("/v1/search", b) for b in SEARCHES]


@pytest.mark.parametrize(("path", "body"), VALID, ids=[f"{p[4:]}-{i}" for i, (p, _) in enumerate(VALID)])
def test_same_bytes_as_fastapi(app_and_url, path, body):
    app, url = app_and_url
    direct, fastapi = _both(app, url, path, json.dumps(body).encode())
    assert direct.took_direct
    assert direct.status_code == fastapi.status_code == 200
    assert direct.content == fastapi.content
    assert direct.headers["content-type"] == fastapi.headers["content-type"] == "application/json"


@pytest.mark.parametrize("body", INVALID, ids=range(len(INVALID)))
def test_errors_same_as_fastapi(app_and_url, body):
    """Bodies the model refuses and requests the service refuses (unknown model, unknown field)
    get the same status and OpenAI-style error either way."""
    app, url = app_and_url
    direct, fastapi = _both(app, url, "/v1/embeddings", body)
    assert direct.status_code == fastapi.status_code and direct.status_code in (400, 404)
    assert direct.json() == fastapi.json()


def test_other_content_types_go_through_fastapi(app_and_url):
    """Only ``application/json`` bodies take the direct route; others get FastAPI's answer."""
    app, url = app_and_url
    body = b'{"input": "hello"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        direct, fastapi = _both(app, url, "/v1/embeddings", body, {"Content-Type": ctype})
        assert not direct.took_direct
        assert (direct.status_code, direct.content) == (fastapi.status_code, fastapi.content)
    charset, _ = _both(app, url, "/v1/embeddings", body, {"Content-Type": "application/json; charset=utf-8"})
    assert charset.took_direct and charset.status_code == 200


def test_direct_requests_count_under_their_route(app_and_url):
    app, url = app_and_url
    with httpx.Client(base_url=url, timeout=30) as client:

        def count() -> float:
            text = client.get("/metrics").text
            line = [
                x
                for x in text.splitlines()
                if x.startswith("embforge_requests_total{") and '"/v1/embeddings"' in x and 'code="200"' in x
            ]
            return float(line[0].rsplit(" ", 1)[1]) if line else 0.0

        before = count()
        assert client.post("/v1/embeddings", json={"input": "hi"}).status_code == 200
        assert count() == before + 1
