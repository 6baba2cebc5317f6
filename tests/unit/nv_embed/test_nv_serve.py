"""The server applies an NV-Embed model's stored query instruction per role."""

from __future__ import annotations

import numpy as np


def test_server_applies_instruction_per_role(make_decoder, minilm_tokenizer):
    from fastapi.testclient import TestClient

    from embforge.nv_embed.model import build_nv_embed
    from embforge.serve import ServeConfig, create_app

    enc = build_nv_embed(
        make_decoder("mistral"), minilm_tokenizer, num_latents=8, num_heads=4, task="Find the answer"
    ).eval()
    texts = ["where is the louvre?", "the museum is in paris"]
    with TestClient(create_app(enc, config=ServeConfig(model_name="nv"))) as client:
        got = {}
        for role in ("query", "document"):
            r = client.post("/v1/embeddings", json={"input": texts, "role": role})
            assert r.status_code == 200, r.text
            got[role] = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
    np.testing.assert_allclose(got["query"], enc.encode(texts, role="query").dense, atol=1e-5)
    np.testing.assert_allclose(got["document"], enc.encode(texts, role="document").dense, atol=1e-5)
    assert np.abs(got["query"] - got["document"]).max() > 1e-3  # the instruction is applied to queries only
