"""A fourth head, defined and registered in this file only: encode, save/load, head_scores, serve.

``dense2``: a linear projection (H -> 16) of the mean-pooled hidden states, scored by inner
product through ``embforge.scoring.dense_scores``. Nothing in ``src/`` names it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from embforge.errors import ConfigError
from embforge.model.builders import tiny_bert
from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.heads import HEADS, Head, HeadOptions, head_scores
from embforge.scoring import dense_scores
from embforge.serve import ServeConfig, create_app
from embforge.types import Batch, EmbeddingOutput, Embeddings

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ["the dog runs in the park", "a cat sleeps", "planes fly over the sea", "hello"]
DIM = 16


class Dense2Head(Head):
    """Mean pooling -> Linear(H, 16): (B, T, H) -> (B, 16)."""

    bge_m3_file = "dense2_linear.pt"

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, DIM)

    @classmethod
    def build(cls, hidden_size, tokenizer, config) -> Dense2Head:
        return cls(hidden_size)

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        m = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, H)
        return {"dense2": self.linear(pooled)}  # (B, 16)

    def file_module(self) -> nn.Module:
        return self.linear

    def init_missing(self) -> str:
        with torch.no_grad():
            self.linear.weight.copy_(torch.ones_like(self.linear.weight) / self.linear.in_features)
            self.linear.bias.zero_()
        return "W = 1/H, b = 0"

    @classmethod
    def score(cls, q: EmbeddingOutput, d: EmbeddingOutput) -> torch.Tensor:
        return dense_scores(q.output("dense2"), d.output("dense2"))

    @classmethod
    def score_numpy(cls, q: Embeddings, d: Embeddings) -> np.ndarray:
        q2, d2 = (torch.from_numpy(x.output("dense2")) for x in (q, d))
        return dense_scores(q2, d2).numpy()


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Register the toy head for this module only (other tests see the built-in registry)."""
    HEADS.add("dense2", Dense2Head)
    yield
    HEADS.unregister("dense2")


@pytest.fixture(scope="module")
def enc(registered) -> Encoder:
    backbone, tok = tiny_bert(seed=3)
    e = Encoder(backbone, tok, EncoderConfig(heads=["dense", "dense2"], pooling="mean"))
    torch.manual_seed(5)
    with torch.no_grad():
        e.head_modules["dense2"].linear.weight.normal_()
    return e.eval()


def _by_hand(enc: Encoder, texts: list[str]) -> np.ndarray:
    b = enc.tokenize(texts)
    with torch.no_grad():
        h = enc.hidden_states(b)
        m = b.attention_mask.unsqueeze(-1).float()
        return enc.head_modules["dense2"].linear((h * m).sum(1) / m.sum(1)).numpy()


def test_unknown_heads_are_named_from_the_registry():
    with pytest.raises(
        ConfigError, match="unknown head 'dense3'; choose from: dense, dense2, multivector, sparse"
    ):
        HEADS.get("dense3")


def test_encoder_has_the_plugin_head(enc):
    assert enc.heads == ("dense", "dense2") == enc.head_names
    assert isinstance(enc.head_modules["dense2"], Dense2Head)


def test_encode_returns_it(enc):
    emb = enc.encode(TEXTS, heads=("dense", "dense2"), batch_size=3)
    assert emb.output("dense2").shape == (len(TEXTS), DIM) and emb.output("dense2").dtype == np.float32
    assert set(emb.outputs) == {"dense", "dense2"} and len(emb) == len(TEXTS)
    np.testing.assert_allclose(emb.extra["dense2"], _by_hand(enc, TEXTS), atol=1e-5)
    out = enc(enc.tokenize(TEXTS), heads=("dense2",))
    assert out.dense is None and out.output("dense2").shape == (len(TEXTS), DIM)


@pytest.mark.parametrize("fmt", ["embforge", "bge-m3"])
def test_save_load_round_trips_it(enc, tmp_path, fmt):
    enc.save_pretrained(str(tmp_path), format=fmt)
    if fmt == "bge-m3":
        assert (tmp_path / "dense2_linear.pt").is_file()
    back = Encoder.from_pretrained(str(tmp_path))
    assert back.heads == ("dense", "dense2")
    a = enc.encode(TEXTS, heads=("dense", "dense2"))
    b = back.encode(TEXTS, heads=("dense", "dense2"))
    np.testing.assert_allclose(b.output("dense2"), a.output("dense2"), atol=1e-6)
    np.testing.assert_allclose(b.dense, a.dense, atol=1e-6)


def test_missing_weights_are_initialised_by_the_head(enc, tmp_path, caplog):
    enc.save_pretrained(str(tmp_path), format="bge-m3")
    (tmp_path / "dense2_linear.pt").unlink()
    back = Encoder.from_pretrained(str(tmp_path))
    w = back.head_modules["dense2"].linear.weight
    assert torch.allclose(w, torch.full_like(w, 1 / w.shape[1]))
    assert "dense2_linear.pt not found" not in caplog.text  # said when the head is first used
    back.encode(["x"], heads=("dense2",))
    assert "dense2_linear.pt not found" in caplog.text and "W = 1/H, b = 0" in caplog.text


def test_head_scores_scores_it(enc):
    q, d = enc.tokenize(TEXTS[:2], role="query"), enc.tokenize(TEXTS, role="document")
    qo, do = enc(q, heads=("dense2",)), enc(d, heads=("dense2",))  # eval mode (no dropout), with graph
    s = head_scores(qo, do, "dense2")
    assert s.shape == (2, len(TEXTS)) and s.requires_grad
    s.sum().backward()
    assert enc.head_modules["dense2"].linear.weight.grad is not None
    qe = enc.encode(TEXTS[:2], role="query", heads=("dense2",))
    de = enc.encode(TEXTS, heads=("dense2",))
    sn = head_scores(qe, de, "dense2")
    assert sn.dtype == np.float32
    np.testing.assert_allclose(sn, qe.extra["dense2"] @ de.extra["dense2"].T, rtol=1e-5)
    np.testing.assert_allclose(sn, s.detach().numpy(), rtol=1e-4, atol=1e-4)


def test_a_loss_can_iterate_the_heads(enc):
    """What a multi-head loss does: one score matrix per head the encoder has, from the registry."""
    b = enc.tokenize(TEXTS)
    out = enc(b)
    scores = {h: head_scores(out, out, h) for h in enc.head_names}
    assert set(scores) == {"dense", "dense2"} and all(s.shape == (4, 4) for s in scores.values())


def test_the_server_returns_it(enc):
    app = create_app(enc, config=ServeConfig(model_name="toy"))
    with TestClient(app) as client:
        r = client.post("/v1/embeddings", json={"input": TEXTS, "dense2": True})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        got = np.array([item["dense2_embedding"] for item in data], dtype=np.float32)
        np.testing.assert_allclose(got, _by_hand(enc, TEXTS), atol=1e-5)
        assert all(len(item["embedding"]) == enc.hidden_size for item in data)
        r = client.post("/v1/embeddings", json={"input": "x", "dense3": True})
        assert r.status_code == 400 and "unknown field 'dense3'" in r.json()["error"]["message"]
        r = client.post("/v1/embeddings", json={"input": "x", "sparse": True})
        assert r.status_code == 400 and r.json()["error"]["code"] == "head_not_available"
        assert client.get("/healthz").json()["heads"] == ["dense", "dense2"]


@pytest.mark.parametrize("sub_batch", ["null", "3"])
def test_the_contrastive_recipe_trains_it(enc, tmp_path, sub_batch):
    """InfoNCE on every configured head, plain and GradCache steps: the plugin head's weights move."""
    from embforge.train.recipes import load_config
    from helpers.train_fixtures import tiny_overrides, write_data

    model_dir = tmp_path / "model"
    enc.save_pretrained(str(model_dir))
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    ov = tiny_overrides("arctic-finetune", model_dir, data, out)
    ov += ["model.heads=[dense,dense2]", "loss.name=infonce", "loss.matryoshka_dims=[]", "loss.matryoshka_weights=null"]
    ov += [f"loop.sub_batch_size={sub_batch}", "model.gradient_checkpointing=false"]
    recipe, cfg = load_config(ROOT / "configs" / "arctic-finetune.yaml", ov)
    result = recipe.run(cfg)
    assert result.steps == 2
    assert all("infonce/dense2" in row for row in result.log if "loss" in row)
    trained = Encoder.from_pretrained(str(out / "final"))
    assert trained.heads == ("dense", "dense2")
    before = enc.head_modules["dense2"].linear.weight
    after = trained.head_modules["dense2"].linear.weight
    assert not torch.allclose(before, after)


def test_an_index_searches_it(enc, tmp_path):
    """The plugin head's vectors go into a saved exact index; search == brute force ``head_scores``."""
    from embforge.index import ExactDenseIndex, load_index

    docs = enc.encode(TEXTS, heads=("dense2",))
    queries = enc.encode(TEXTS[:2], role="query", heads=("dense2",))
    idx = ExactDenseIndex()
    idx.add([f"d{i}" for i in range(len(TEXTS))], docs.output("dense2"))
    idx.save(tmp_path / "idx")
    hits = load_index(tmp_path / "idx").search(queries.output("dense2"), k=len(TEXTS))
    brute = head_scores(queries, docs, "dense2")
    for qi in range(2):
        order = np.argsort(-brute[qi], kind="stable")
        assert hits.ids[qi] == [f"d{j}" for j in order]
        np.testing.assert_allclose(hits.scores[qi], brute[qi][order], rtol=1e-5, atol=1e-5)


def test_a_head_without_build_or_forward_cannot_be_made():
    """``Head.build`` / ``Head.forward`` are abstract: a plugin missing one fails at class use,
    naming the method, not deep inside an encode."""

    class NoForward(Head):
        name = "no_forward"

        @classmethod
        def build(cls, hidden_size, tokenizer, config):
            return cls()

    with pytest.raises(TypeError, match="forward"):
        NoForward.build(8, None, None)
