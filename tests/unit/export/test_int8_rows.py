"""Per-row dynamic int8 MatMuls (``embforge.export.int8_rows``): ONNX Runtime runs the rewrite as written,
it matches the numpy reference of the same arithmetic, and one outlier row no longer coarsens the others."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from embforge.export.int8_rows import (
    GELU_NEG_BOUND,
    constant_weight_matmuls,
    quantize_rows,
    quantize_weight,
    reference_matmul,
)

K, N = 48, 24


def _graph(w: np.ndarray, bias: np.ndarray, gelu: bool = False) -> onnx.ModelProto:
    """x [B, T, K] (-> erf GELU) -> MatMul(W) -> Add(bias) -> y, as the torch exporter writes a Linear."""
    nodes, x = [], "x"
    if gelu:  # 0.5 * x * (1 + erf(x / sqrt 2)), the exported nn.GELU
        nodes += [
            helper.make_node("Div", ["x", "sqrt2"], ["xd"], name="/act/Div"),
            helper.make_node("Erf", ["xd"], ["e"], name="/act/Erf"),
            helper.make_node("Add", ["e", "one"], ["e1"], name="/act/Add"),
            helper.make_node("Mul", ["x", "e1"], ["xm"], name="/act/Mul"),
            helper.make_node("Mul", ["xm", "half"], ["g"], name="/act/Mul_1"),
        ]
        x = "g"
    nodes += [
        helper.make_node("MatMul", [x, "W"], ["mm"], name="/lin/MatMul"),
        helper.make_node("Add", ["mm", "b"], ["y"], name="/lin/Add"),
    ]
    consts = {
        "W": w,
        "b": bias,
        "sqrt2": np.float32(np.sqrt(2)),
        "one": np.float32(1),
        "half": np.float32(0.5),
    }
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", N])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray, saved: str | None = None) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if saved:
        opts.optimized_model_filepath = saved
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return rng.normal(0, 0.2, (K, N)).astype(np.float32), rng.normal(0, 0.1, N).astype(np.float32)


def _inputs(seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(0, 1, (2, 5, K)).astype(np.float32)
    x[0, 0, 3] = 200.0  # one outlier token (the LLM.int8() case)
    x[1, 4] = 0.0  # an all-zero (padding-like) row
    return x


def test_rewrite_matches_the_numpy_reference_and_survives_the_optimiser(weights, tmp_path):
    w, bias = weights
    model = _graph(w, bias)
    res = quantize_rows(model)
    assert res.matmuls == ("/lin/MatMul",) and res.inputs == 1
    onnx.checker.check_model(model)
    x = _inputs()
    got = _run(model, x, saved=str(tmp_path / "opt.onnx"))
    want = reference_matmul(x, w) + bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(got[1, 4] - bias).max() <= 1e-6  # the zero row: exactly the bias
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert "QuantizeLinear" in ops and "MatMulIntegerToFloat" in ops, ops
    assert (
        "DynamicQuantizeLinear" not in ops and "DynamicQuantizeMatMul" not in ops and "MatMul" not in ops
    ), ops
    # the float weight is gone; the int8 weight and per-channel scale replace it
    names = {t.name: t for t in model.graph.initializer}
    assert "W" not in names
    (wq,) = [numpy_helper.to_array(t) for k, t in names.items() if k.endswith("w_int8")]
    assert wq.dtype == np.int8 and np.array_equal(wq, quantize_weight(w)[0])


def test_one_outlier_row_no_longer_coarsens_the_others(weights):
    """Per-tensor (ONNX Runtime's quantize_dynamic arithmetic) vs per-row, on the rows beside the outlier."""
    w, _ = weights
    x = _inputs()
    exact = x @ w
    lo, hi = min(x.min(), 0), max(x.max(), 0)
    s, zp = (hi - lo) / 255, np.rint(-lo / ((hi - lo) / 255))
    per_tensor = (
        ((np.clip(np.rint(x / s) + zp, 0, 255) - zp) * s) @ quantize_weight(w)[0] * quantize_weight(w)[1]
    )
    per_row = reference_matmul(x, w)
    others = np.ones(x.shape[:2], bool)
    others[0, 0] = False
    err_t = np.abs(per_tensor - exact)[others].mean()
    err_r = np.abs(per_row - exact)[others].mean()
    assert err_r * 10 < err_t, (err_r, err_t)


def test_gelu_input_uses_one_reduction_and_its_bound(weights, tmp_path):
    w, bias = weights
    model = _graph(w, bias, gelu=True)
    quantize_rows(model)
    ops = [n.op_type for n in model.graph.node]
    assert "ReduceMax" in ops and "ReduceMin" not in ops, ops
    x = _inputs(2)
    g = (0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))).astype(np.float32)
    assert g.min() >= -GELU_NEG_BOUND
    np.testing.assert_allclose(_run(model, x), reference_matmul(g, w, gelu=True) + bias, rtol=1e-4, atol=1e-4)


def test_only_the_named_matmuls_and_an_unknown_name_is_an_error(weights):
    w, bias = weights
    model = _graph(w, bias)
    assert constant_weight_matmuls(model) == ["/lin/MatMul"]
    assert quantize_rows(model, []).matmuls == ()
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    with pytest.raises(ValueError, match="/nope/MatMul"):
        quantize_rows(model, ["/nope/MatMul"])
