"""The HTTP API on loopback with a deterministic fake encoder: the official openai client,
extensions, errors, auth, backpressure and metrics."""

from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from embforge.serve import ServeConfig, create_app


@pytest.fixture
def server(fake_server):
    url, enc = fake_server
    enc.fail_on = None
    return url, enc


def _client(url, key="unused"):
    import openai

    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


TEXTS = ["The cat sat on the mat.", "Embeddings map text to vectors.", "서울은 한국의 수도이다."]


def test_openai_client_returns_encode_vectors(server):
    url, enc = server
    client = _client(url)
    ref = enc.encode(TEXTS, role="document", heads=("dense",)).dense
    for kwargs in ({}, {"encoding_format": "float"}, {"encoding_format": "base64"}):
        resp = client.embeddings.create(model="fake", input=TEXTS, **kwargs)
        got = resp.data
        if kwargs.get("encoding_format") == "base64":  # explicit base64: the client leaves strings
            vecs = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in got])
        else:  # default: the client asks for base64 and decodes it itself
            vecs = np.array([d.embedding for d in got], dtype=np.float32)
        np.testing.assert_array_equal(vecs, ref)
        assert [d.index for d in got] == [0, 1, 2]
        assert resp.model == "fake" and resp.object == "list"
    n_tokens = sum(len(x) for x in enc.tokenizer(TEXTS)["input_ids"])
    assert resp.usage.prompt_tokens == n_tokens == resp.usage.total_tokens


def test_single_string_and_token_ids(server):
    url, enc = server
    client = _client(url)
    one = client.embeddings.create(model="fake", input="hello world", encoding_format="float")
    assert len(one.data) == 1
    np.testing.assert_array_equal(np.float32(one.data[0].embedding), enc.encode(["hello world"]).dense[0])
    ids = enc.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    by_ids = client.embeddings.create(model="fake", input=[ids, ids], encoding_format="float")
    assert len(by_ids.data) == 2
    np.testing.assert_array_equal(np.float32(by_ids.data[1].embedding), np.float32(one.data[0].embedding))


def test_dimensions_truncate_and_renormalise(server):
    url, enc = server
    resp = _client(url).embeddings.create(model="fake", input=TEXTS, dimensions=8)
    vecs = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert vecs.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vecs, enc.encode(TEXTS, dim=8).dense, atol=1e-6)
    full = enc.encode(TEXTS).dense
    assert not np.allclose(vecs, full[:, :8])  # renormalised, not only cut


def test_role_query_applies_the_encoder_instruction(server):
    url, enc = server
    q = _client(url).embeddings.create(model="fake", input=TEXTS[:1], extra_body={"role": "query"})
    d = _client(url).embeddings.create(model="fake", input=TEXTS[:1])
    np.testing.assert_array_equal(
        np.float32(q.data[0].embedding), enc.encode(TEXTS[:1], role="query").dense[0]
    )
    assert not np.allclose(q.data[0].embedding, d.data[0].embedding)
    # usage counts the prefix tokens too
    assert q.usage.prompt_tokens > d.usage.prompt_tokens


def test_sparse_and_multivector_equal_encode(server):
    url, enc = server
    resp = _client(url).embeddings.create(
        model="fake",
        input=TEXTS,
        encoding_format="float",
        extra_body={"sparse": True, "sparse_tokens": True, "multivector": True},
    )
    ref = enc.encode(TEXTS, heads=("dense", "sparse", "multivector"))
    for i, item in enumerate(resp.data):
        extra = item.model_extra
        sparse = {int(k): v for k, v in extra["sparse_embedding"].items()}
        want = ref.sparse.row(i)
        assert sparse.keys() == want.keys()
        np.testing.assert_array_equal(np.float32([sparse[k] for k in want]), np.float32(list(want.values())))
        toks = enc.tokenizer.convert_ids_to_tokens(list(want))
        assert list(extra["sparse_tokens"]) == toks
        mv = np.array(extra["multivector_embedding"], dtype=np.float32)
        assert extra["multivector_shape"] == list(ref.multivector[i].shape)
        np.testing.assert_array_equal(mv, ref.multivector[i])


def test_multivector_base64_and_quantized_outputs(server):
    url, enc = server
    ref = enc.encode(TEXTS, heads=("dense", "multivector"))
    r = httpx.post(
        url + "/v1/embeddings",
        json={"input": TEXTS, "encoding_format": "base64", "multivector": True, "dense": False},
    ).json()
    for i, item in enumerate(r["data"]):
        assert item["embedding"] == ""
        mv = np.frombuffer(base64.b64decode(item["multivector_embedding"]), "<f4").reshape(
            item["multivector_shape"]
        )
        np.testing.assert_array_equal(mv, ref.multivector[i])
    q8 = httpx.post(
        url + "/v1/embeddings", json={"input": TEXTS, "quantization": "int8", "multivector": True}
    ).json()
    got = np.array([d["embedding"] for d in q8["data"]])
    scale = np.float32([d["embedding_scale"] for d in q8["data"]])
    assert got.dtype.kind == "i" and np.abs(got).max(axis=1).tolist() == [127] * 3
    np.testing.assert_allclose(scale, np.abs(ref.dense).max(axis=1) / 127, rtol=1e-6)
    np.testing.assert_array_equal(got, np.rint(ref.dense / scale[:, None]))
    np.testing.assert_allclose(got * scale[:, None], ref.dense, atol=scale.max() / 2 + 1e-7)
    for i, d in enumerate(q8["data"]):
        mv = np.array(d["multivector_embedding"]) * np.float32(d["multivector_scale"])[:, None]
        np.testing.assert_allclose(mv, ref.multivector[i], atol=max(d["multivector_scale"]) / 2 + 1e-7)
    qb = httpx.post(
        url + "/v1/embeddings", json={"input": TEXTS, "quantization": "binary", "encoding_format": "base64"}
    ).json()
    bits = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), np.uint8) for d in qb["data"]])
    np.testing.assert_array_equal(
        np.unpackbits(bits, axis=1)[:, : ref.dense.shape[1]], (ref.dense > 0).astype(np.uint8)
    )


BAD = [
    ({"input": ""}, "empty_input", r"input\[0\] is empty"),
    ({"input": []}, "empty_input", "empty list"),
    ({"input": ["ok", "   "]}, "empty_input", r"input\[1\] is empty"),
    ({"input": 5}, "invalid_request", "input must be a string"),
    ({"input": ["a", 3]}, "invalid_request", "input must be a string"),
    ({"input": [[1, "x"]]}, "invalid_request", "input must be"),
    ({"input": [[101, 999999]]}, "invalid_token_id", r"input\[0\]\[1\] = 999999 is not a token id"),
    ({"input": [[-1]]}, "invalid_token_id", "is not a token id"),
    ({"input": "word " * 100}, "context_length_exceeded", "more than the limit of 64 tokens per input"),
    ({"input": ["word " * 60] * 4}, "too_many_tokens", "more than the limit of 200"),
    ({"input": ["x"] * 9}, "too_many_inputs", "9 items, more than the limit of 8"),
    ({"input": "x", "dimensions": 33}, "invalid_dimensions", "exceeds the model's dense size 32"),
    ({"input": "x", "dimensions": 0}, "invalid_request", "dimensions"),
    ({"input": "x", "encoding_format": "hex"}, "invalid_request", "encoding_format"),
    ({"input": "x", "role": "passage"}, "invalid_request", "role"),
    ({"input": "x", "sparse_weights": True}, "invalid_request", "unknown field 'sparse_weights'"),
    ({"input": "x", "dense": False}, "no_output", "no output requested"),
    ({"text": "x"}, "invalid_request", "'input' is required"),
]


@pytest.mark.parametrize("body,code,match", BAD)
def test_bad_requests_get_400_and_server_keeps_serving(server, body, code, match):
    url, _ = server
    r = httpx.post(url + "/v1/embeddings", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error"
    import re

    assert re.search(match, err["message"]), err["message"]
    ok = httpx.post(url + "/v1/embeddings", json={"input": "still alive"})
    assert ok.status_code == 200


def test_other_errors(server):
    url, _ = server
    r = httpx.post(url + "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/embeddings", json={"input": "x", "model": "gpt-4"})
    assert r.status_code == 404 and "serves 'fake'" in r.json()["error"]["message"]
    assert "--any-model" in r.json()["error"]["message"]
    r = httpx.get(url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "http_404"
    r = httpx.post(url + "/v1/search", json={"query": "x"})
    assert r.status_code == 404 and "--index" in r.json()["error"]["message"]
    # truncate=true accepts the long input that was refused above
    r = httpx.post(url + "/v1/embeddings", json={"input": "word " * 100, "truncate": True})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 64
    # the openai client raises its own typed error with the message
    import openai

    with pytest.raises(openai.BadRequestError, match="empty"):
        _client(url).embeddings.create(model="fake", input="")


def test_missing_head_is_explained(make_fake_encoder, make_server):
    url = make_server(create_app(make_fake_encoder(heads=("dense",))))
    r = httpx.post(url + "/v1/embeddings", json={"input": "x", "sparse": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "head_not_available"
    assert "has no sparse head (it has: dense)" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/embeddings", json={"input": "x", "multivector": True})
    assert r.status_code == 400 and "has no multivector head" in r.json()["error"]["message"]


def test_encoder_crash_gives_500_and_server_keeps_serving(server):
    url, enc = server
    enc.fail_on = "explode"
    r = httpx.post(url + "/v1/embeddings", json={"input": ["explode"]})
    assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert httpx.post(url + "/v1/embeddings", json={"input": "fine"}).status_code == 200


def test_bearer_auth(fake_encoder, make_server):
    url = make_server(create_app(fake_encoder, config=ServeConfig(api_key="s3cret")))
    import openai

    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        _client(url, key="wrong").embeddings.create(model="x", input="hi")
    r = httpx.post(url + "/v1/embeddings", json={"input": "hi"})
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    ok = _client(url, key="s3cret").embeddings.create(model=_model_of(url), input="hi")
    assert len(ok.data) == 1
    assert httpx.get(url + "/healthz").status_code == 200  # health and metrics stay open
    assert httpx.get(url + "/metrics").status_code == 200


def _model_of(url):
    return httpx.get(url + "/healthz").json()["model"]


def test_queue_full_gives_429_then_503_timeout_and_recovers(fake_encoder, make_server):
    cfg = ServeConfig(max_queue_inputs=4, max_inputs=4, queue_timeout_s=2.0, max_wait_ms=0)
    url = make_server(create_app(fake_encoder, config=cfg))
    fake_encoder.gate = threading.Event()  # the encoder blocks until released
    fake_encoder.started.clear()  # set by the app's warm-up
    results = {}

    def post(name, body):
        results[name] = httpx.post(url + "/v1/embeddings", json=body, timeout=30)

    first = threading.Thread(target=post, args=("first", {"input": ["a", "b"]}))
    first.start()
    _wait_depth(url, 2)
    assert fake_encoder.started.wait(10)  # "a", "b" are encoding, so "c", "d" cannot join them
    second = threading.Thread(target=post, args=("second", {"input": ["c", "d"]}))
    second.start()
    _wait_depth(url, 4)
    full = httpx.post(url + "/v1/embeddings", json={"input": ["e"]})
    assert full.status_code == 429, full.text
    assert full.json()["error"]["code"] == "queue_full" and full.headers["retry-after"] == "1"
    second.join(10)  # queued behind the blocked batch for > queue_timeout_s -> 503
    assert results["second"].status_code == 503, results["second"].text
    assert "no encoder capacity within 2 s" in results["second"].json()["error"]["message"]
    fake_encoder.gate.set()
    first.join(10)
    assert results["first"].status_code == 200
    assert httpx.post(url + "/v1/embeddings", json={"input": ["e"]}).status_code == 200
    text = httpx.get(url + "/metrics").text
    assert 'embforge_requests_total{endpoint="/v1/embeddings",code="429"} 1' in text
    assert 'embforge_rejected_total{reason="queue_full"} 1' in text
    assert 'embforge_rejected_total{reason="timeout"} 2' in text


def _wait_depth(url, n, timeout=10.0):
    t0 = time.monotonic()
    while httpx.get(url + "/healthz").json()["queue_depth"] < n:
        assert time.monotonic() - t0 < timeout, "the queue never filled"
        time.sleep(0.01)


def test_concurrent_requests_are_batched_together(fake_encoder, make_server):
    # max_inline_ms=0: the fake encoder takes microseconds, so with inline encoding (the default)
    # each request may be answered on the event loop before the next thread's request arrives;
    # this test is about the queue's batching of requests that overlap
    cfg = ServeConfig(max_wait_ms=200, max_batch_tokens=100_000, max_inline_ms=0)
    url = make_server(create_app(fake_encoder, config=cfg))
    fake_encoder.calls.clear()
    texts = [f"sentence number {i}" for i in range(12)]
    out = {}

    def post(i):
        out[i] = httpx.post(
            url + "/v1/embeddings", json={"input": texts[i], "encoding_format": "float"}
        ).json()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ref = fake_encoder.encode(texts).dense
    for i in range(12):
        np.testing.assert_array_equal(np.float32(out[i]["data"][0]["embedding"]), ref[i])
    batches = [c for c in fake_encoder.calls[:-1]]
    assert len(batches) < 12  # some requests shared a micro-batch
    text = httpx.get(url + "/metrics").text
    assert "embforge_batch_size_count " in text and "embforge_tokens_total" in text


def test_healthz_metrics_and_models(fake_encoder, make_server):
    url = make_server(create_app(fake_encoder, config=ServeConfig(model_name="fake")))
    httpx.post(url + "/v1/embeddings", json={"input": ["a b", "c"]})
    httpx.post(url + "/v1/embeddings", json={"input": ""})
    h = httpx.get(url + "/healthz").json()
    assert h["status"] == "ok" and h["model"] == "fake" and h["dense_dim"] == 32
    assert h["heads"] == ["dense", "sparse", "multivector"] and h["max_tokens_per_input"] == 64
    m = httpx.get(url + "/metrics")
    assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = m.text
    assert 'embforge_requests_total{endpoint="/v1/embeddings",code="200"} 1' in text
    assert 'embforge_request_errors_total{endpoint="/v1/embeddings",code="400"} 1' in text
    assert 'embforge_inputs_total{endpoint="/v1/embeddings"} 2' in text
    assert 'embforge_request_latency_seconds_count{endpoint="/v1/embeddings"} 2' in text
    assert "# TYPE embforge_queue_depth gauge" in text and "embforge_queue_depth 0" in text
    assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "fake"


class BruteForceIndex:
    """Exact dense + sparse index over a few documents (what /v1/search is checked against)."""

    heads = ("dense", "sparse")

    def __init__(self, enc, docs):
        self.ids = [f"doc-{i}" for i in range(len(docs))]
        self.emb = enc.encode(docs, role="document", heads=self.heads)
        self.seen_weights = []

    def search(self, q, k=10, weights=None):
        from embforge.types import Hits

        self.seen_weights.append(weights)
        w = {"dense": 1.0, "sparse": 0.3, **(weights or {})}
        dense = q.dense @ self.emb.dense.T
        lex = np.array(
            [
                [
                    sum(v * d.get(t, 0.0) for t, v in q.sparse.row(i).items())
                    for d in self.emb.sparse.to_dicts()
                ]
                for i in range(len(q))
            ]
        )
        total = w["dense"] * dense + w["sparse"] * lex
        order = np.argsort(-total, axis=1, kind="stable")[:, :k]
        pick = lambda m: [[float(m[i, j]) for j in row] for i, row in enumerate(order)]  # noqa: E731
        return Hits(
            ids=[[self.ids[j] for j in row] for row in order],
            scores=pick(total),
            per_head={"dense": pick(dense), "sparse": pick(lex)},
        )


def test_search_ranks_with_the_index(fake_encoder, make_server):
    docs = [
        "Seoul is the capital of Korea.",
        "Cats sleep a lot.",
        "Paris is in France.",
        "Korea has mountains.",
    ]
    index = BruteForceIndex(fake_encoder, docs)
    url = make_server(create_app(fake_encoder, index=index, config=ServeConfig(model_name="fake")))
    r = httpx.post(url + "/v1/search", json={"query": ["capital of Korea", "sleeping cats"], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    want = index.search(
        fake_encoder.encode(["capital of Korea", "sleeping cats"], role="query", heads=("dense", "sparse")),
        k=3,
    )
    for qi, res in enumerate(body["data"]):
        assert res["index"] == qi and [h["rank"] for h in res["hits"]] == [1, 2, 3]
        assert [h["id"] for h in res["hits"]] == want.ids[qi]
        np.testing.assert_allclose([h["score"] for h in res["hits"]], want.scores[qi], rtol=1e-6)
        np.testing.assert_allclose(
            [h["scores"]["sparse"] for h in res["hits"]], want.per_head["sparse"][qi], rtol=1e-6
        )
    assert body["usage"]["prompt_tokens"] > 0
    r = httpx.post(
        url + "/v1/search",
        json={"query": "capital", "k": 2, "weights": {"dense": 0.0, "sparse": 1.0}, "return_scores": False},
    )
    assert r.status_code == 200 and "scores" not in r.json()["data"][0]["hits"][0]
    assert index.seen_weights[-1] == {"dense": 0.0, "sparse": 1.0, "multivector": 0.0}  # left out = 0
    for bad, match in (
        ({"query": ""}, "query[0] is empty"),
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "weights": {"bm25": 1}}, "weights"),
    ):
        r = httpx.post(url + "/v1/search", json=bad)
        assert r.status_code == 400 and match in r.json()["error"]["message"], r.text


def test_any_model_accepts_other_names(fake_encoder, make_server):
    url = make_server(create_app(fake_encoder, config=ServeConfig(model_name="fake", any_model=True)))
    r = httpx.post(url + "/v1/embeddings", json={"input": "x", "model": "text-embedding-3-small"})
    assert r.status_code == 200 and r.json()["model"] == "fake"


def test_parallel_big_and_small_requests_share_the_tokenizer_safely(fake_encoder, make_server):
    url = make_server(create_app(fake_encoder, config=ServeConfig(max_wait_ms=1)))
    big = {"input": [("lorem ipsum dolor sit amet " * 40) + str(i) for i in range(20)], "truncate": True}
    small = {"input": "a short one", "encoding_format": "base64"}
    codes = []

    def post(body):
        codes.append(httpx.post(url + "/v1/embeddings", json=body, timeout=60).status_code)

    threads = [threading.Thread(target=post, args=(big if i % 2 else small,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [200] * 16


def test_body_that_is_not_a_json_object(server):
    url, _ = server
    for content, headers in ((b"x", {}), (b"[1, 2]", {"content-type": "application/json"})):
        r = httpx.post(url + "/v1/embeddings", content=content, headers=headers)
        assert r.status_code == 400, r.text
        assert (
            "must be a JSON object" in r.json()["error"]["message"]
            or "not valid JSON" in r.json()["error"]["message"]
        )


def test_a_request_still_sending_its_body_keeps_a_lone_request_off_the_event_loop(fake_encoder, make_server):
    """Requests count as on their way from the head on: while one is still sending its body, a
    lone request is not encoded inline on the event loop (it would hold the other one up)."""
    url = make_server(create_app(fake_encoder, config=ServeConfig(max_wait_ms=1)))
    threads = []
    real = fake_encoder.encode

    def recording(*a, **kw):
        threads.append(threading.current_thread().name)
        return real(*a, **kw)

    fake_encoder.encode = recording
    try:
        for _ in range(3):  # lone requests on an idle server: measured, then inline
            assert httpx.post(url + "/v1/embeddings", json={"input": "alone"}).status_code == 200
        assert not threads[-1].startswith("embforge-encode"), threads  # on the event loop's thread
        host, port = url.removeprefix("http://").split(":")
        body = b'{"input": "slow body"}'
        s = socket.create_connection((host, int(port)))
        s.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        time.sleep(0.3)  # its head is in, its body is not
        assert httpx.post(url + "/v1/embeddings", json={"input": "meanwhile"}).status_code == 200
        assert threads[-1].startswith("embforge-encode"), threads
        s.sendall(body[5:])
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.close()
    finally:
        fake_encoder.encode = real
