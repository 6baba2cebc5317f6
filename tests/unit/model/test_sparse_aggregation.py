"""The sparse head's term aggregation: BGE-M3's ``max`` and the term-frequency-aware ``max_tf``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from embforge.errors import CheckpointError
from embforge.export import export_onnx
from embforge.model.builders import tiny_bert
from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.heads.sparse import TF_B, TF_K1, SparseHead, tf_saturation
from embforge.scoring import lexical_scores, sparse_vector_scores

ALL = ("dense", "sparse", "multivector")
TEXTS = ["the river runs by the river and the river bends", "a river", "stone bridge over water"]


def _g(c: int) -> float:
    return c * (TF_K1 + 1) / (c + TF_K1)


def _bert(aggregation: str) -> Encoder:
    backbone, tok = tiny_bert(seed=3)
    enc = Encoder(
        backbone, tok, EncoderConfig(heads=list(ALL), pooling="mean", sparse_aggregation=aggregation)
    )
    torch.manual_seed(5)
    with torch.no_grad():
        for p in enc.head_modules.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return enc.eval()


def test_tf_saturation_counts_kept_tokens_of_the_same_id():
    ids = torch.tensor([[101, 7, 8, 7, 7, 102, 0, 0], [101, 7, 7, 102, 0, 0, 0, 0]])
    keep = torch.tensor([[0, 1, 1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.float32)
    g = tf_saturation(ids, keep)
    assert g[0, 1].item() == pytest.approx(_g(3)) and g[0, 2].item() == pytest.approx(1.0)
    assert g[1, 1].item() == pytest.approx(_g(2))
    assert g[0, 6].item() == 0.0  # padding (id 0) is never counted, even though it repeats


def test_length_normalisation_is_bm25s():
    ids = torch.tensor([[7, 7, 8, 9], [7, 8, 0, 0]])
    keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.float32)
    g = tf_saturation(ids, keep, avg_length=2.0)
    for row, c, length in ((0, 2, 4), (1, 1, 2)):
        k = TF_K1 * (1 - TF_B + TF_B * length / 2.0)
        assert g[row, 0].item() == pytest.approx(c * (TF_K1 + 1) / (c + k))
    assert g[1, 0].item() == pytest.approx(1.0)  # a text of the reference length, term seen once


def test_max_tf_is_max_times_saturation_and_equal_to_max_without_repeats():
    torch.manual_seed(0)
    h = torch.randn(1, 6, 4)
    ids = torch.tensor([[101, 7, 8, 7, 9, 102]])
    mask = torch.ones_like(ids)
    plain, tf = SparseHead(4, [101, 102], "max"), SparseHead(4, [101, 102], "max_tf")
    tf.load_state_dict(plain.state_dict())
    wp, wt = plain.weights(h, ids, mask), tf.weights(h, ids, mask)
    assert torch.allclose(wt[0, [2, 4]], wp[0, [2, 4]])  # terms seen once: unchanged
    assert torch.allclose(wt[0, [1, 3]], wp[0, [1, 3]] * _g(2))
    # the training score (max over a term's tokens) is g(c) x the max weight
    one = torch.tensor([[7]])
    s = lexical_scores(torch.ones(1, 1), one, wt, ids)
    assert s.item() == pytest.approx(_g(2) * max(wp[0, 1].item(), wp[0, 3].item()), rel=1e-6)


def test_encoded_vectors_and_training_scores_agree(tmp_path):
    enc = _bert("max_tf")
    q = enc.encode(TEXTS[1:2], role="query", heads=("sparse",)).sparse
    d = enc.encode(TEXTS, role="document", heads=("sparse",)).sparse
    with torch.no_grad():
        bq, bd = enc.tokenize(TEXTS[1:2], role="query"), enc.tokenize(TEXTS, role="document")
        oq = enc.sparse_head.weights(enc.hidden_states(bq), bq.input_ids, bq.attention_mask)
        od = enc.sparse_head.weights(enc.hidden_states(bd), bd.input_ids, bd.attention_mask)
        ref = lexical_scores(oq, bq.input_ids, od, bd.input_ids).numpy()
    assert np.allclose(sparse_vector_scores(q, d), ref, atol=1e-5)
    # with every token weighing 0.5, "the" and "river" (3 times each in text 0) weigh g(3) x 0.5
    plain = _bert("max")
    for e in (plain, enc):
        e.sparse_head.init_constant(0.5)
    rp = plain.encode(TEXTS[:1], role="document", heads=("sparse",)).sparse.row(0)
    rt = enc.encode(TEXTS[:1], role="document", heads=("sparse",)).sparse.row(0)
    assert set(rp) == set(rt) and set(rp.values()) == {0.5}
    assert sorted(round(v / 0.5, 4) for v in rt.values()) == [1.0] * (len(rt) - 2) + [round(_g(3), 4)] * 2


def test_saved_with_the_model_and_bad_values_name_the_file(tmp_path):
    enc = _bert("max_tf")
    enc.config.sparse_avg_length = enc.sparse_head.avg_length = 40.5
    enc.save_pretrained(tmp_path / "m")
    back = Encoder.from_pretrained(str(tmp_path / "m"))
    assert back.config.sparse_aggregation == "max_tf" and back.sparse_head.aggregation == "max_tf"
    assert back.sparse_head.avg_length == 40.5
    cfg_file = next(p for p in (tmp_path / "m").rglob("*.json") if "sparse_aggregation" in p.read_text())
    cfg = json.loads(cfg_file.read_text())
    _set(cfg, "sparse_aggregation", "sum")
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"sparse_aggregation 'sum' is not one of max, max_tf"):
        Encoder.from_pretrained(str(tmp_path / "m"))
    _set(cfg, "sparse_aggregation", "max_tf")
    _set(cfg, "sparse_avg_length", -3)
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"sparse_avg_length must be a number of tokens > 0 or null, got -3"
    ):
        Encoder.from_pretrained(str(tmp_path / "m"))


def _set(d: dict, key: str, value: str) -> None:
    """Set ``key`` wherever it sits in the (possibly nested) config dict."""
    for k, v in d.items():
        if k == key:
            d[k] = value
        elif isinstance(v, dict):
            _set(v, key, value)


def test_onnx_graph_carries_the_aggregation(tmp_path):
    enc = _bert("max_tf")
    enc.config.sparse_avg_length = enc.sparse_head.avg_length = 5.0
    export_onnx(enc, tmp_path / "onnx")
    onnx_enc = Encoder.from_pretrained(str(tmp_path / "onnx"))
    a = onnx_enc.encode(TEXTS, role="document", heads=("sparse",)).sparse
    b = enc.encode(TEXTS, role="document", heads=("sparse",)).sparse
    assert np.array_equal(a.indices, b.indices) and np.abs(a.values - b.values).max() <= 1e-4


def test_training_config_sets_the_aggregation(tiny_m3_path, tmp_path):
    from embforge.config import build_config
    from embforge.train.data import TrainExample
    from embforge.train.recipes import RECIPES
    from embforge.train.recipes.contrastive import _load_encoder, _set_sparse_avg_length

    path = tmp_path / "m3"
    shutil.copytree(tiny_m3_path, path)
    recipe = RECIPES.get("contrastive")
    cfg = build_config(
        recipe.schema,
        {
            "recipe": "contrastive",
            "model": {"path": str(path), "heads": list(ALL), "sparse_aggregation": "max_tf"},
            "data": {"train_files": [str(tmp_path / "x.jsonl")]},
            "loop": {"output_dir": str(tmp_path / "out")},
        },
    )
    enc = _load_encoder(cfg)
    assert enc.config.sparse_aggregation == "max_tf" and enc.sparse_head.aggregation == "max_tf"
    docs = ["one two three", "four five six seven eight", "one two three"]
    _set_sparse_avg_length(cfg, enc, [TrainExample("q", [docs[0]], docs[1:], None, None, "x", "x.jsonl:1")])
    special = set(enc.tokenizer.all_special_ids)
    lengths = [sum(t not in special for t in enc.tokenizer(d)["input_ids"]) for d in docs[:2]]
    assert enc.sparse_head.avg_length == enc.config.sparse_avg_length == pytest.approx(np.mean(lengths))
