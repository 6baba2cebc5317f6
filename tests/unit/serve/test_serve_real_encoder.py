"""The server over the real ``Encoder``: all-MiniLM-L6-v2 through the official openai client,
and a tiny BGE-M3-layout model for the sparse and multi-vector outputs."""

from __future__ import annotations

import base64

import httpx
import numpy as np

from embforge.serve import ServeConfig, create_app

TEXTS = [
    "The cat sat on the mat.",
    "Embeddings map text to vectors, one per sentence, for retrieval.",
    "서울은 한국의 수도이다.",
    "short",
]


def _serve(make_server, encoder, **cfg):
    return make_server(create_app(encoder, config=ServeConfig(**cfg)))


def test_openai_client_equals_encode_minilm(minilm, make_server):
    import openai

    url = _serve(make_server, minilm, model_name="all-MiniLM-L6-v2")
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    ref = minilm.encode(TEXTS, heads=("dense",)).dense
    resp = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)  # base64 under the hood
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert got.shape == (4, 384)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert resp.usage.prompt_tokens == int(minilm.encode(TEXTS).num_tokens.sum())
    small = client.embeddings.create(
        model="all-MiniLM-L6-v2", input=TEXTS, dimensions=64, encoding_format="float"
    )
    got64 = np.array([d.embedding for d in small.data], dtype=np.float32)
    np.testing.assert_allclose(got64, minilm.encode(TEXTS, dim=64).dense, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got64, axis=1), 1.0, atol=1e-5)
    r = httpx.post(url + "/v1/embeddings", json={"input": "x", "sparse": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "head_not_available"
    r = httpx.post(url + "/v1/embeddings", json={"input": "word " * 600})
    assert (
        r.status_code == 400
        and f"limit of {minilm.max_length} tokens per input" in r.json()["error"]["message"]
    )


def test_sparse_multivector_equal_encode_tiny_m3(tiny_m3, make_server):
    url = _serve(make_server, tiny_m3)
    ref = tiny_m3.encode(TEXTS, role="query", heads=("dense", "sparse", "multivector"))
    body = {"input": TEXTS, "role": "query", "sparse": True, "sparse_tokens": True, "multivector": True}
    floats = httpx.post(url + "/v1/embeddings", json=body).json()
    b64 = httpx.post(url + "/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    for i in range(len(TEXTS)):
        f, b = floats["data"][i], b64["data"][i]
        np.testing.assert_allclose(np.float32(f["embedding"]), ref.dense[i], atol=1e-5)
        np.testing.assert_allclose(
            np.frombuffer(base64.b64decode(b["embedding"]), "<f4"), ref.dense[i], atol=1e-5
        )
        want = ref.sparse.row(i)
        got = {int(k): v for k, v in f["sparse_embedding"].items()}
        assert got.keys() == want.keys() and len(want) > 0
        np.testing.assert_allclose([got[k] for k in want], list(want.values()), atol=1e-5)
        assert list(f["sparse_tokens"]) == tiny_m3.tokenizer.convert_ids_to_tokens(list(want))
        assert f["multivector_shape"] == list(ref.multivector[i].shape)
        np.testing.assert_allclose(np.float32(f["multivector_embedding"]), ref.multivector[i], atol=1e-5)
        mv = np.frombuffer(base64.b64decode(b["multivector_embedding"]), "<f4").reshape(
            b["multivector_shape"]
        )
        np.testing.assert_allclose(mv, ref.multivector[i], atol=1e-5)
