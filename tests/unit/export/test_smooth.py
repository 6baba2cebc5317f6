"""SmoothQuant smoothing of an ONNX graph (``embforge.export.smooth``): the graph computes the same
function, MatMuls that read one tensor share its ``Mul``, padding does not set the channel ranges, and
an input with outlier channels loses less to dynamic int8 after smoothing."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from embforge.export.smooth import (
    SMOOTH_ALPHA,
    calibration_batches,
    calibration_texts,
    channel_absmax,
    smooth_matmuls,
    smoothed_inputs,
)

K, N = 32, 16
NAMES = ("/layer.0/attention/self/query/MatMul", "/layer.0/attention/self/key/MatMul")


def _graph(wq: np.ndarray, wk: np.ndarray) -> onnx.ModelProto:
    """x [B, T, K] -> Identity (the 'LayerNorm') -> two MatMuls that read its output; attention_mask unused."""
    nodes = [
        helper.make_node("Identity", ["x"], ["h"], name="/ln/Identity"),
        helper.make_node("MatMul", ["h", "Wq"], ["q"], name=NAMES[0]),
        helper.make_node("MatMul", ["h", "Wk"], ["k"], name=NAMES[1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "seq", N]) for n in ("q", "k")],
        [numpy_helper.from_array(w.astype(np.float32), n) for n, w in (("Wq", wq), ("Wk", wk))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mask = np.ones(x.shape[:2], np.int64)
    return sess.run(["q", "k"], {"x": x, "attention_mask": mask})


def _outlier_inputs(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    """[n, 12, K] activations whose channels 0 and 5 are 40x the others (LayerNorm outlier channels)."""
    x = rng.standard_normal((n, 12, K)).astype(np.float32)
    x[..., [0, 5]] *= 40.0
    return x


def _feeds(x: np.ndarray, mask: np.ndarray | None = None) -> list[dict[str, np.ndarray]]:
    return [{"x": x, "attention_mask": np.ones(x.shape[:2], np.int64) if mask is None else mask}]


def _smooth(model: onnx.ModelProto, feeds, tmp_path, alpha: float = SMOOTH_ALPHA):
    """channel_absmax on the saved graph, then smooth_matmuls on ``model`` (as the exporter does)."""
    path = tmp_path / "probe-src.onnx"
    onnx.save(model, str(path))
    amax = channel_absmax(path, smoothed_inputs(model, list(NAMES)), feeds)
    return smooth_matmuls(model, list(NAMES), amax, alpha=alpha)


def test_smoothing_keeps_the_function_and_shares_one_mul(tmp_path):
    rng = np.random.default_rng(0)
    model = _graph(rng.standard_normal((K, N)), rng.standard_normal((K, N)))
    x = _outlier_inputs(rng)
    before = _run(model, x)
    res = _smooth(model, _feeds(_outlier_inputs(rng)), tmp_path)
    onnx.checker.check_model(model)
    assert res.tensors == ("h",) and res.matmuls == NAMES
    muls = [n for n in model.graph.node if n.op_type == "Mul"]
    assert len(muls) == 1 and muls[0].input[0] == "h"
    readers = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert {n.input[0] for n in readers} == {muls[0].output[0]}
    # the Mul sits right after its producer, before its readers (topological order)
    order = [n.name for n in model.graph.node]
    assert order.index("/ln/Identity") < order.index(muls[0].name) < min(order.index(n) for n in NAMES)
    for a, b in zip(before, _run(model, x)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)


def test_padding_tokens_do_not_set_the_channel_range(tmp_path):
    x = np.ones((2, 3, K), np.float32)
    x[1, 2] = 1000.0  # a padding position
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.int64)
    rng = np.random.default_rng(1)
    onnx.save(_graph(rng.standard_normal((K, N)), rng.standard_normal((K, N))), str(tmp_path / "g.onnx"))
    amax = channel_absmax(tmp_path / "g.onnx", ["h"], _feeds(x, mask))
    np.testing.assert_array_equal(amax["h"], np.ones(K, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # the probe graph is gone


def test_channel_ranges_of_a_graph_with_external_weights(tmp_path):
    """Graphs over 2 GB keep their weights in external files: the probe reads them where they are."""
    rng = np.random.default_rng(4)
    model = _graph(rng.standard_normal((K, N)), rng.standard_normal((K, N)))
    x = _outlier_inputs(rng)
    onnx.save(model, str(tmp_path / "in.onnx"))
    want = channel_absmax(tmp_path / "in.onnx", ["h"], _feeds(x))
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save_model(model, str(ext / "g.onnx"), save_as_external_data=True, location="g.data", size_threshold=0)
    got = channel_absmax(ext / "g.onnx", ["h"], _feeds(x))
    np.testing.assert_array_equal(got["h"], want["h"])
    assert sorted(p.name for p in ext.iterdir()) == ["g.data", "g.onnx"]


def _int8_error(model: onnx.ModelProto, x: np.ndarray, tmp_path, name: str) -> float:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp_path / f"{name}.onnx", tmp_path / f"{name}-int8.onnx"
    onnx.save(model, str(src))
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
    ref, got = _run(model, x), _run(onnx.load(str(dst)), x)
    return max(float(np.linalg.norm(g - r) / np.linalg.norm(r)) for g, r in zip(got, ref))


def test_outlier_channels_lose_less_to_int8_after_smoothing(tmp_path):
    rng = np.random.default_rng(2)
    wq, wk = rng.standard_normal((K, N)), rng.standard_normal((K, N))
    x = _outlier_inputs(rng)
    plain = _int8_error(_graph(wq, wk), x, tmp_path, "plain")
    smoothed = _graph(wq, wk)
    _smooth(smoothed, _feeds(_outlier_inputs(rng)), tmp_path)
    after = _int8_error(smoothed, x, tmp_path, "smooth")
    assert after < 0.5 * plain, (plain, after)


def test_alpha_out_of_range_and_missing_ranges_are_refused():
    rng = np.random.default_rng(3)
    model = _graph(rng.standard_normal((K, N)), rng.standard_normal((K, N)))
    with pytest.raises(ValueError, match=r"alpha 1.0: choose a value in \(0, 1\)"):
        smooth_matmuls(model, list(NAMES), {}, 1.0)
    with pytest.raises(ValueError, match="no channel maxima for"):
        smooth_matmuls(model, list(NAMES), {}, 0.5)


class _Vocab:
    def get_vocab(self) -> dict[str, int]:
        return {"[CLS]": 0, "##ing": 1, "▁haus": 2, "Ġcat": 3, "12": 4, "a": 5, "日本": 6, "<s>": 7}


def test_calibration_texts_are_seeded_vocabulary_words():
    a, b = calibration_texts(_Vocab(), n=5, seed=0), calibration_texts(_Vocab(), n=5, seed=0)
    assert a == b and len(a) == 5
    assert {w for t in a for w in t.split()} <= {"ing", "haus", "cat", "日本"}
    assert calibration_texts(_Vocab(), n=5, seed=1) != a


def test_calibration_batches_feed_the_graph_inputs(tiny_m3):
    texts = calibration_texts(tiny_m3.tokenizer, n=5)
    batches = calibration_batches(tiny_m3.tokenizer, texts, ["input_ids", "attention_mask"], 16, batch=2)
    assert [len(b["input_ids"]) for b in batches] == [2, 2, 1]
    assert all(b["input_ids"].dtype == np.int64 and b["input_ids"].shape[1] <= 16 for b in batches)
