"""``model.sparse_init: idf_terms``: a per-vocabulary term weight added to the sparse head's contextual
one, started at the training documents' IDF (embforge.model.heads.sparse)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embforge.errors import ConfigError
from embforge.export import export_onnx
from embforge.model.builders import tiny_bert
from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.heads.sparse import IDF_SCALE, init_sparse_head, token_idf

ALL = ("dense", "sparse", "multivector")
DOCS = ["the river runs by the bridge", "the stone bridge", "the water", "a river of stone"]


def _enc(aggregation: str = "max") -> Encoder:
    backbone, tok = tiny_bert(seed=3)
    return Encoder(
        backbone, tok, EncoderConfig(heads=list(ALL), pooling="mean", sparse_aggregation=aggregation)
    ).eval()


def _idf(n: int, df: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def test_token_idf_is_bm25s_idf_per_id():
    enc = _enc()
    idf, n = token_idf(enc.tokenizer, DOCS + DOCS[:1])  # a duplicate text counts once
    assert n == 4
    tid = enc.tokenizer.convert_tokens_to_ids
    for word, df in (("the", 3), ("river", 2), ("water", 1)):
        if enc.tokenizer.tokenize(word) == [word]:
            assert idf[tid(word)] == pytest.approx(_idf(4, df))
    assert idf.max() == pytest.approx(_idf(4, 0))  # ids the corpus never has


def test_untrained_head_weighs_each_token_by_its_idf():
    enc = _enc()
    did = init_sparse_head(enc, "idf_terms", DOCS)
    assert "idf_terms" in did and enc.config.sparse_term_weights
    idf, _ = token_idf(enc.tokenizer, DOCS)
    scale = IDF_SCALE / idf[idf < idf.max()].mean()
    out = enc.encode(["the river", "stone water"], role="document", heads=("sparse",)).sparse
    for i, text in enumerate(["the river", "stone water"]):
        ids = [t for t in enc.tokenizer(text)["input_ids"] if t not in enc.tokenizer.all_special_ids]
        got = out.row(i)
        assert set(got) == set(ids)
        for t in ids:
            assert got[t] == pytest.approx(idf[t] * scale, rel=1e-5)


def test_term_weights_train_save_load_and_export(tmp_path):
    enc = _enc("max_tf")
    init_sparse_head(enc, "idf_terms", DOCS)
    head = enc.sparse_head
    assert any(p is head.term_weight for p in enc.parameters())  # the optimizer sees it
    b = enc.tokenize(DOCS[:2], role="document")
    w = head.weights(enc.hidden_states(b), b.input_ids, b.attention_mask)
    w.sum().backward()
    assert head.term_weight.grad is not None and head.term_weight.grad.abs().sum() > 0
    with torch.no_grad():
        head.linear.weight.normal_(0, 0.1)  # a trained contextual part on top of the table
    enc.save_pretrained(str(tmp_path / "m"))
    back = Encoder.from_pretrained(str(tmp_path / "m"))
    assert back.config.sparse_term_weights and torch.equal(back.sparse_head.term_weight, head.term_weight)
    a = back.encode(DOCS, role="document", heads=("sparse",)).sparse
    ref = enc.encode(DOCS, role="document", heads=("sparse",)).sparse
    assert np.array_equal(a.indices, ref.indices) and np.allclose(a.values, ref.values, atol=1e-6)
    export_onnx(enc, tmp_path / "onnx")
    o = (
        Encoder.from_pretrained(str(tmp_path / "onnx"))
        .encode(DOCS, role="document", heads=("sparse",))
        .sparse
    )
    assert np.array_equal(o.indices, ref.indices) and np.abs(o.values - ref.values).max() <= 1e-4
    with pytest.raises(ConfigError, match="per-term weights.*format='embforge'"):
        enc.save_pretrained(str(tmp_path / "bge"), format="bge-m3")


def test_without_the_table_the_head_is_bge_m3s():
    enc = _enc()
    assert enc.sparse_head.term_weight is None and not enc.config.sparse_term_weights
    enc.sparse_head.enable_term_weights(len(enc.tokenizer))  # zeros: nothing changes
    b = enc.tokenize(DOCS, role="document")
    h = enc.hidden_states(b)
    with_table = enc.sparse_head.weights(h, b.input_ids, b.attention_mask)
    enc.sparse_head.term_weight = None
    assert torch.equal(with_table, enc.sparse_head.weights(h, b.input_ids, b.attention_mask))
