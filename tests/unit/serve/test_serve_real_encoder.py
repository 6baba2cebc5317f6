"""The server over the real ``Encoder``: all-MiniLM-L6-v2 through the official openai client,
and a tiny BGE-M3-layout model for the sparse and multi-vector outputs."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from embforge.serve import ServeConfig, create_app
from helpers.requires import require_module

TEXTS = [
    "The cat sat on the mat.",
    "Embeddings map text to vectors, one per sentence, for retrieval.",
    "서울은 한국의 수도이다.",
    "short",
]


def _serve(make_server, encoder, **cfg):
    return make_server(create_app(encoder, config=ServeConfig(**cfg)))


def _exported(request, torch_encoder, name: str):
    """The torch encoder itself, or (param "onnx") its ONNX export loaded from the folder by the
    server's own loader (``ServeConfig.backend``): the API tests run on both backends."""
    if request.param == "torch":
        return torch_encoder
    from embforge.export import export_onnx
    from embforge.serve.engine import load_encoder

    out = request.getfixturevalue("tmp_path_factory").mktemp("onnx") / name
    export_onnx(torch_encoder, out)
    enc = load_encoder(str(out), backend="onnx")
    assert enc.backend == "onnx"
    return enc


@pytest.fixture(scope="module", params=["torch", "onnx"])
def served_minilm(request, minilm):
    return _exported(request, minilm, "minilm")


@pytest.fixture(scope="module", params=["torch", "onnx"])
def served_m3(request, tiny_m3):
    return _exported(request, tiny_m3, "tiny-m3")


def test_openai_client_equals_encode_minilm(minilm, served_minilm, make_server):
    import openai

    url = _serve(make_server, served_minilm, model_name="all-MiniLM-L6-v2")
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


def test_sparse_multivector_equal_encode_tiny_m3(tiny_m3, served_m3, make_server):
    url = _serve(make_server, served_m3)
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


@pytest.mark.parametrize("store", ["hybrid", "qdrant"])
def test_search_over_a_saved_index(tiny_m3, served_m3, make_server, tmp_path, store):
    """`serve --index` over embforge's own hybrid folder and over an embedded Qdrant collection
    (issue 17): the same /v1/search answers as the index searched directly."""
    from embforge.index import ExactDenseIndex, MultiVectorIndex, SparseIndex, load_index
    from embforge.search import HybridIndex

    docs = [
        "Seoul is the capital of South Korea.",
        "The cat sleeps on the warm mat all day.",
        "Paris is the capital of France.",
        "Vectors of text help retrieval systems rank documents.",
        "서울은 한국의 수도이다.",
        "Mountains cover most of Korea.",
    ]
    ids = [f"d{i}" for i in range(len(docs))]
    heads = ("dense", "sparse", "multivector")
    if store == "qdrant":
        require_module("qdrant_client", "pip install 'embforge[qdrant]'")
        from embforge.index.qdrant import QdrantIndex

        index = QdrantIndex.open(tmp_path / "idx", heads=heads)
        index.add(ids, tiny_m3.encode(docs, heads=heads), [{"title": "", "text": d} for d in docs])
        index.save(tmp_path / "idx")
    else:
        index = HybridIndex(
            dense=ExactDenseIndex(), sparse=SparseIndex(), multivector=MultiVectorIndex(dtype="float32")
        )
        index.add(ids, tiny_m3.encode(docs, heads=heads))
        index.save(tmp_path / "idx")
    url = make_server(create_app(served_m3, index=str(tmp_path / "idx")))
    assert httpx.get(url + "/healthz").json()["index"] is True
    queries = ["capital of Korea", "sleeping cat"]
    r = httpx.post(url + "/v1/search", json={"query": queries, "k": 4}, timeout=60)
    assert r.status_code == 200, r.text
    # the reference query vectors come from the encoder the server runs (torch or its ONNX export):
    # a random tiny model has near-ties that fp32 rounding differences between backends can swap
    q = served_m3.encode(queries, role="query", heads=("dense", "sparse", "multivector"))
    want = load_index(tmp_path / "idx").search(q, k=4)
    for qi, res in enumerate(r.json()["data"]):
        got_ids = [h["id"] for h in res["hits"]]
        assert got_ids == want.ids[qi]
        np.testing.assert_allclose([h["score"] for h in res["hits"]], want.scores[qi], atol=1e-4)
        dense = {d: float(q.dense[qi] @ v) for d, v in zip(ids, tiny_m3.encode(docs).dense)}
        np.testing.assert_allclose(
            [h["scores"]["dense"] for h in res["hits"]], [dense[d] for d in got_ids], atol=1e-4
        )
        assert set(res["hits"][0]["scores"]) == {"dense", "sparse", "multivector"}
    rrf = httpx.post(
        url + "/v1/search",
        json={"query": queries[0], "k": 3, "fusion": "rrf", "weights": {"dense": 1, "multivector": 1}},
    )
    assert rrf.status_code == 200
    want_rrf = load_index(tmp_path / "idx").search(
        served_m3.encode(queries[:1], role="query", heads=("dense", "sparse", "multivector")),
        k=3,
        fusion="rrf",
        weights={"dense": 1, "multivector": 1},  # sparse left out: weighs 0
    )
    assert [h["id"] for h in rrf.json()["data"][0]["hits"]] == want_rrf.ids[0]


def test_index_that_does_not_fit_the_model_fails_at_start(tiny_m3, minilm, tmp_path):
    from embforge.errors import CheckpointError
    from embforge.index import ExactDenseIndex, MultiVectorIndex
    from embforge.search import HybridIndex

    index = HybridIndex(dense=ExactDenseIndex(), multivector=MultiVectorIndex())
    index.add(["a", "b"], tiny_m3.encode(["one doc", "another doc"], heads=("dense", "multivector")))
    with pytest.raises(CheckpointError, match="holds multivector vectors but the model"):
        create_app(minilm, index=index)  # MiniLM loaded dense-only
    dense_only = HybridIndex(dense=ExactDenseIndex())
    dense_only.add(["a", "b"], tiny_m3.encode(["one doc", "another doc"]))  # 32-dim vectors
    with pytest.raises(CheckpointError, match="does not fit the model"):
        create_app(minilm, index=dense_only)  # 384-dim queries


def test_malformed_looking_token_ids_real_encoder_encodes_the_ids(minilm, served_minilm, make_server):
    """OpenAI token-id inputs reach the real ``Encoder`` as ids: the flat form and the list of
    lists equal the text's vector (query role prefix included) when the ids are the text's,
    and ids that do not survive decode -> re-tokenise ("##ing" alone) are encoded as sent."""
    url = _serve(make_server, served_minilm, model_name="m")
    tok = minilm.tokenizer
    ids = tok("the cat sat on the mat")["input_ids"]
    for role in ("document", "query"):
        ref = minilm.encode(["the cat sat on the mat"], role=role, heads=("dense",)).dense[0]
        flat = httpx.post(url + "/v1/embeddings", json={"input": ids, "role": role})
        assert flat.status_code == 200, flat.text
        np.testing.assert_allclose(np.float32(flat.json()["data"][0]["embedding"]), ref, atol=1e-5)
        bare = httpx.post(url + "/v1/embeddings", json={"input": [ids[1:-1]], "role": role}).json()
        np.testing.assert_allclose(np.float32(bare["data"][0]["embedding"]), ref, atol=1e-5)
    ing = tok.convert_tokens_to_ids("##ing")
    direct = minilm.encode_ids([[ing]], heads=("dense",)).dense[0]
    decoded = minilm.encode([tok.decode([ing])], heads=("dense",)).dense[0]
    assert not np.allclose(direct, decoded, atol=1e-3)
    got = httpx.post(url + "/v1/embeddings", json={"input": [ing]}).json()["data"][0]["embedding"]
    np.testing.assert_allclose(np.float32(got), direct, atol=1e-5)


@pytest.mark.parametrize("which", ["minilm", "tiny_m3"])
def test_token_counts_equal_the_hf_tokenizer_call(request, which):
    """``count_tokens`` counts with the Rust tokenizer directly (no HF wrapping): the same counts
    as the HF call with the role prefix, special tokens and no truncation, long texts included."""
    from embforge.serve.engine import EncoderEngine

    enc = request.getfixturevalue(which)
    engine = EncoderEngine(enc)
    assert engine._backend() is not None  # the fast path is the one under test
    texts = [*TEXTS, "word " * 700, "ünïcödé 中文  spaces\tand\nlines " * 20]
    for role in ("query", "document"):
        prefix = engine.prefixes[role]
        want = [len(x) for x in enc.tokenizer([prefix + t for t in texts], truncation=False)["input_ids"]]
        assert engine.count_tokens(texts, role) == want
    assert engine.count_tokens(["word " * 700], "document")[0] > engine.max_length  # not truncated
