"""ONNX export: one graph with every head, fidelity against torch, the backend chosen by the folder.

Fidelity gate (issue 19): fp32 ONNX vs torch max |diff| <= 1e-4 on every head, for a tiny BERT
(mean pooling, random heads) and a tiny XLM-R in the BGE-M3 layout, through ``encode`` (sparse
dicts, multi-vector arrays, Matryoshka, MCLS). The bundled MiniLM and the int8 quality gate on the
bundled XQuAD sets are in ``test_onnx_quality.py`` (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from embforge.errors import CheckpointError, ConfigError
from embforge.export import export_onnx
from embforge.export import onnx as export_mod
from embforge.export.onnx import ffn_down_matmuls, matmul_groups
from embforge.model.builders import tiny_bert
from embforge.model.checkpoint import load_encoder, resolve_backend, trained_heads
from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.heads import HEADS, Head, HeadOptions
from embforge.model.onnx_encoder import GRAPH_FILE, OnnxEncoder
from embforge.types import Batch

TOL = 1e-4
TEXTS = [
    "the dog runs in the park",
    "Ein Hund läuft im Park, und die Sonne scheint über den Bäumen.",
    "x",
    "planes fly over the sea while the tide comes in slowly, slowly, slowly",
    "hello world",
]
ALL = ("dense", "sparse", "multivector")


def _bert_encoder() -> Encoder:
    backbone, tok = tiny_bert(seed=7)
    enc = Encoder(backbone, tok, EncoderConfig(heads=list(ALL), pooling="mean"))
    torch.manual_seed(11)
    with torch.no_grad():
        for p in enc.head_modules.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return enc.eval()


@pytest.fixture(scope="module")
def bert_pair(tmp_path_factory) -> tuple[Encoder, Encoder]:
    enc = _bert_encoder()
    out = tmp_path_factory.mktemp("onnx") / "bert"
    export_onnx(enc, out)
    return enc, Encoder.from_pretrained(str(out))


@pytest.fixture(scope="module")
def xlmr_pair(tiny_m3, tiny_m3_path, tmp_path_factory) -> tuple[Encoder, Encoder, Path]:
    out = tmp_path_factory.mktemp("onnx") / "xlmr"
    res = export_onnx(str(tiny_m3_path), out)
    assert max(res.max_abs_diff.values()) <= TOL, res.max_abs_diff
    return tiny_m3, Encoder.from_pretrained(str(out)), out


def _max_diff(a, b) -> dict[str, float]:
    """Max |a - b| per head of two ``Embeddings`` (sparse: same terms, then values)."""
    out = {}
    if a.dense is not None:
        out["dense"] = float(np.abs(a.dense - b.dense).max())
    if a.sparse is not None:
        for i in range(len(a.sparse.indptr) - 1):
            ra, rb = a.sparse.row(i), b.sparse.row(i)
            assert set(ra) == set(rb), (i, sorted(set(ra) ^ set(rb)))
        out["sparse"] = float(np.abs(a.sparse.values - b.sparse.values).max())
    if a.multivector is not None:
        assert [x.shape for x in a.multivector] == [x.shape for x in b.multivector]
        out["multivector"] = max(float(np.abs(x - y).max()) for x, y in zip(a.multivector, b.multivector))
    return out


@pytest.mark.parametrize("pair", ["bert_pair", "xlmr_pair"])
def test_fp32_every_head_matches_torch(pair, request):
    torch_enc, onnx_enc = request.getfixturevalue(pair)[:2]
    assert isinstance(onnx_enc, OnnxEncoder) and onnx_enc.heads == torch_enc.heads == ALL
    for role in ("query", "document"):
        a = onnx_enc.encode(TEXTS, role=role, heads=ALL, batch_size=2)
        b = torch_enc.encode(TEXTS, role=role, heads=ALL, batch_size=2)
        diffs = _max_diff(a, b)
        assert set(diffs) == set(ALL)
        assert max(diffs.values()) <= TOL, diffs
        assert (a.num_tokens == b.num_tokens).all()


@pytest.mark.parametrize("pair", ["bert_pair", "xlmr_pair"])
def test_matryoshka_mcls_and_dynamic_shapes(pair, request):
    torch_enc, onnx_enc = request.getfixturevalue(pair)[:2]
    for kw in ({"dim": 8}, {"long_inputs": "mcls", "max_length": 12}, {"batch_size": 1}, {"batch_size": 64}):
        a, b = onnx_enc.encode(TEXTS, heads=ALL, **kw), torch_enc.encode(TEXTS, heads=ALL, **kw)
        assert max(_max_diff(a, b).values()) <= TOL, kw
    assert onnx_enc.encode(TEXTS, dim=8).dense.shape == (len(TEXTS), 8)
    s = onnx_enc.similarity(["a dog"], ["the dog runs", "a cat"], head="colbert")
    assert np.allclose(
        s, torch_enc.similarity(["a dog"], ["the dog runs", "a cat"], head="colbert"), atol=TOL
    )


def test_folder_layout_and_config(xlmr_pair):
    _, onnx_enc, out = xlmr_pair
    meta = json.loads((out / "embforge_onnx.json").read_text())
    assert meta["outputs"] == ["last_hidden_state", "dense", "sparse", "multivector", "multivector_mask"]
    assert meta["precision"] == "fp32" and meta["encoder"]["heads"] == list(ALL)
    for f in (GRAPH_FILE, "modules.json", "1_Pooling/config.json", "config.json", "tokenizer_config.json"):
        assert (out / f).is_file(), f
    assert not list(out.parent.glob(".xlmr.tmp-*"))
    assert trained_heads(str(out)) == ALL
    assert resolve_backend(str(out)) == "onnx"


def test_tokenizer_files_truncate_at_the_encoders_limit(tmp_path):
    """Runtimes that read only the tokenizer files (fastembed: min(model_max_length, max_length))
    truncate where the encoder does: a stale ``max_length: 128`` (all-MiniLM-L6-v2 ships one, with
    max_seq_length 256) made fastembed cut every text over 128 tokens (cosine down to 0.51)."""
    enc = _bert_encoder()
    enc.config.max_length = 40
    folder = tmp_path / "tok"
    enc.tokenizer.save_pretrained(str(folder))  # a checkpoint whose tokenizer carries a stale limit
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg |= {"max_length": 16, "model_max_length": 512}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    enc.tokenizer = type(enc.tokenizer).from_pretrained(str(folder))
    export_onnx(enc, tmp_path / "out")
    got = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert got["max_length"] == enc.max_length == 40
    assert min(got["model_max_length"], got["max_length"]) == 40  # fastembed's rule


def test_only_asked_heads_and_errors(xlmr_pair, tiny_m3_path):
    out = str(xlmr_pair[2])
    dense_only = Encoder.from_pretrained(out, heads=("dense",))
    assert dense_only.heads == ("dense",)
    with pytest.raises(ConfigError, match="--backend onnx"):
        Encoder.from_pretrained(str(tiny_m3_path), backend="onnx")
    with pytest.raises(ConfigError, match="ONNX export without torch weights"):
        Encoder.from_pretrained(out, backend="torch")
    with pytest.raises(ConfigError, match="choose from"):
        Encoder.from_pretrained(out, backend="tensorrt")
    with pytest.raises(CheckpointError, match="ONNX export"):
        load_encoder(out, factory=Encoder)
    with pytest.raises(ConfigError, match="not a trainable checkpoint"):
        xlmr_pair[1].save_pretrained(str(xlmr_pair[2].parent / "x"))


def test_quantize_choices_and_existing_folder(tmp_path, tiny_m3_path):
    with pytest.raises(ConfigError, match="bfloat16"):
        export_onnx(str(tiny_m3_path), tmp_path / "a", quantize="bf16")
    with pytest.raises(ConfigError, match="choose from"):
        export_onnx(str(tiny_m3_path), tmp_path / "a", quantize="int4")
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="exists"):
        export_onnx(str(tiny_m3_path), tmp_path / "b")


def test_export_into_a_folder_that_does_not_exist_yet(tmp_path, tiny_m3_path):
    # `embforge export -o bench/.cache/x` with no bench/.cache: the parent is made, the temp folder
    # sits beside the target (a rename, never a cross-device move), nothing else is left
    out = tmp_path / "not" / "yet" / "m"
    export_onnx(str(tiny_m3_path), out)
    assert (out / GRAPH_FILE).is_file()
    assert [p.name for p in out.parent.iterdir()] == ["m"]


def test_failed_export_leaves_nothing(tmp_path, tiny_m3_path, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "_fidelity", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(str(tiny_m3_path), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_int8_runs_every_head_close_to_fp32(tmp_path, tiny_m3, tiny_m3_path):
    res = export_onnx(str(tiny_m3_path), tmp_path / "q", quantize="int8")
    q = Encoder.from_pretrained(str(tmp_path / "q"))
    assert res.precision == "int8" and q.precision == "int8"
    graph = onnx.load(str(tmp_path / "q" / GRAPH_FILE))
    ops = {n.op_type for n in graph.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, ops
    # the default: per-row activation scales for the FFN down-projections and the heads, per tensor elsewhere
    assert export_mod.INT8_PER_ROW == ("ffn_down", "heads")
    n_layers = tiny_m3.backbone.config.num_hidden_layers
    rows = sorted(n.name[: -len("/rowq/yw")] for n in graph.graph.node if n.name.endswith("/rowq/yw"))
    want = [f"/backbone/encoder/layer.{i}/output/dense/MatMul" for i in range(n_layers)]
    assert rows == sorted([*want, "/multivector/linear/MatMul", "/sparse/linear/MatMul"]), rows
    assert not any(n.op_type == "MatMul" and n.name in rows for n in graph.graph.node)
    per_tensor = [n.name for n in graph.graph.node if n.op_type == "MatMulInteger"]
    assert len(per_tensor) == 5 * n_layers, per_tensor  # Q, K, V, attention out, FFN up
    # SmoothQuant (the default): one Mul per layer before Q/K/V (shared) and one before the FFN up projection
    smooth = [n for n in graph.graph.node if n.op_type == "Mul" and n.name.endswith("/smooth")]
    assert len(smooth) == 2 * n_layers, [n.name for n in smooth]
    a, b = q.encode(TEXTS, heads=ALL), tiny_m3.encode(TEXTS, heads=ALL)
    cos = (a.dense * b.dense).sum(1)
    assert cos.min() >= 0.99, cos
    assert [x.shape for x in a.multivector] == [x.shape for x in b.multivector]


def test_int8_without_smoothing_and_with_own_calibration_texts(tmp_path, tiny_m3_path, caplog):
    export_onnx(str(tiny_m3_path), tmp_path / "plain", quantize="int8", int8_smooth=None)
    graph = onnx.load(str(tmp_path / "plain" / GRAPH_FILE))
    assert not [n for n in graph.graph.node if n.name.endswith("/smooth")]
    with caplog.at_level("INFO", logger="embforge"):
        export_onnx(str(tiny_m3_path), tmp_path / "own", quantize="int8", calibration=["ein Text", "a text"])
    assert "alpha 0.50, 2 calibration texts" in caplog.text
    with pytest.raises(ConfigError, match="no texts"):
        export_onnx(str(tiny_m3_path), tmp_path / "none", quantize="int8", calibration=[])


# ----------------------------------------------------------------------- a plugin head in the graph
class MaxPoolHead(Head):
    """A fourth head defined here only: max-pooled hidden states -> Linear(H, 4)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 4)

    @classmethod
    def build(cls, hidden_size, tokenizer, config) -> MaxPoolHead:
        return cls(hidden_size)

    def forward(self, hidden: torch.Tensor, batch: Batch, opts: HeadOptions) -> dict[str, torch.Tensor]:
        m = batch.attention_mask.unsqueeze(-1).bool()
        return {"maxpool": self.linear(hidden.masked_fill(~m, -1e4).amax(1))}


def test_plugin_head_is_a_graph_output(tmp_path):
    HEADS.add("maxpool", MaxPoolHead)
    try:
        backbone, tok = tiny_bert(seed=1)
        enc = Encoder(backbone, tok, EncoderConfig(heads=["dense", "maxpool"])).eval()
        export_onnx(enc, tmp_path / "p")
        meta = json.loads((tmp_path / "p" / "embforge_onnx.json").read_text())
        assert meta["outputs"] == ["last_hidden_state", "dense", "maxpool"]
        onnx_enc = Encoder.from_pretrained(str(tmp_path / "p"))
        a, b = onnx_enc.encode(TEXTS, heads=("maxpool",)), enc.encode(TEXTS, heads=("maxpool",))
        assert np.abs(a.extra["maxpool"] - b.extra["maxpool"]).max() <= TOL
    finally:
        HEADS.unregister("maxpool")


def test_export_traces_eager_attention_and_restores_the_model(tmp_path, monkeypatch):
    """The graph is traced with eager attention (the pattern ONNX Runtime fuses and quantizes; the SDPA
    trace measured 1.6x slower in int8), and the encoder gets its own attention back afterwards."""
    enc = _bert_encoder()
    enc.backbone.set_attn_implementation("sdpa")
    seen = []
    real = torch.onnx.export

    def spy(*args, **kwargs):
        seen.append(enc.backbone.config._attn_implementation)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    res = export_onnx(enc, tmp_path / "eager")
    assert seen == ["eager"]
    assert enc.backbone.config._attn_implementation == "sdpa"
    assert max(res.max_abs_diff.values()) <= TOL


def test_ffn_down_matmuls_finds_the_gelu_fed_projections_in_layer_order():
    names = [
        "/backbone/encoder/layer.10/output/dense/MatMul",
        "/backbone/encoder/layer.2/attention/output/dense/MatMul",
        "/backbone/encoder/layer.2/output/dense/MatMul",
        "/backbone/layers.1/mlp/down_proj/MatMul",
        "/backbone/encoder/layer.2/intermediate/dense/MatMul",
        "/sparse/linear/MatMul",
    ]
    nodes = [onnx.helper.make_node("MatMul", ["a", "b"], [f"y{i}"], name=n) for i, n in enumerate(names)]
    nodes.append(
        onnx.helper.make_node("Add", ["a", "b"], ["z"], name="/backbone/encoder/layer.0/output/dense/Add")
    )
    graph = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [], []))
    assert ffn_down_matmuls(graph) == [
        "/backbone/layers.1/mlp/down_proj/MatMul",
        "/backbone/encoder/layer.2/output/dense/MatMul",
        "/backbone/encoder/layer.10/output/dense/MatMul",
    ]


def test_matmul_groups_by_role_and_an_unknown_group_is_refused(tmp_path):
    names = {
        "/backbone/encoder/layer.0/attention/self/query/MatMul": "attention",
        "/backbone/layers.0/self_attn/k_proj/MatMul": "attention",
        "/backbone/encoder/layer.0/attention/output/dense/MatMul": "attention_out",
        "/backbone/encoder/layer.0/intermediate/dense/MatMul": "ffn_up",
        "/backbone/layers.0/mlp/gate_proj/MatMul": "ffn_up",
        "/backbone/encoder/layer.0/output/dense/MatMul": "ffn_down",
        "/backbone/pooler/dense/MatMul": "other",
        "/multivector/linear/MatMul": "heads",
    }
    nodes = [onnx.helper.make_node("MatMul", ["a", "w"], [f"y{i}"], name=n) for i, n in enumerate(names)]
    nodes.append(
        onnx.helper.make_node(
            "MatMul", ["a", "a"], ["z"], name="/backbone/encoder/layer.0/attention/self/MatMul"
        )
    )
    w = onnx.numpy_helper.from_array(np.zeros((4, 4), np.float32), "w")
    graph = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [], [], [w]))
    groups = matmul_groups(graph)
    assert {n: g for g, ns in groups.items() for n in ns} == names  # Q @ K^T (no constant weight) is not one
    graph_file = tmp_path / "model.onnx"
    onnx.save(graph, str(graph_file))
    with pytest.raises(ConfigError, match="qkv"):
        export_mod._quantize_int8(graph_file, ("qkv",))


def test_int8_of_a_graph_with_external_weights_leaves_one_graph(tmp_path, tiny_m3):
    """A graph over 2 GB in fp32 (BGE-M3) is traced with its weights in external files: smoothing reads
    and writes them as such, quantization leaves only the int8 graph, and the outputs stay close."""
    import onnxruntime as ort

    export_onnx(tiny_m3, tmp_path / "fp32")
    graph = tmp_path / "fp32" / GRAPH_FILE
    batch = export_mod._check_batch(tiny_m3)
    feed = {"input_ids": batch.input_ids.numpy(), "attention_mask": batch.attention_mask.numpy()}
    want = ort.InferenceSession(str(graph)).run(["dense"], feed)[0]
    # the tracer's layout for > 2 GB: one file per tensor beside the graph
    onnx.save_model(
        onnx.load(str(graph)),
        str(graph),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    assert len(list(graph.parent.iterdir())) > 3
    export_mod._smooth_int8(tiny_m3, graph, 0.5, None)
    assert sorted(p.name for p in graph.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    got = ort.InferenceSession(str(graph)).run(["dense"], feed)[0]
    np.testing.assert_allclose(got, want, atol=1e-4)  # smoothing keeps the function
    export_mod._quantize_int8(graph)
    assert [p.name for p in graph.parent.iterdir()] == ["model.onnx"]
    q = ort.InferenceSession(str(graph)).run(["dense"], feed)[0]
    assert float((q * want).sum(1).min()) >= 0.99
