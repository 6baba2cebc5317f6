"""Per-row (per-token) dynamic int8 quantization of an ONNX graph's MatMuls.

ONNX Runtime's ``quantize_dynamic`` quantizes a MatMul's activations with ONE scale for the whole
``(batch x tokens x features)`` tensor (``DynamicQuantizeLinear``): one token with a large value
(the activation outliers of Dettmers et al., 2022, "LLM.int8()"; Xiao et al., 2023,
"SmoothQuant") coarsens the int8 grid of every other token in the batch. Here every row (token)
gets its own scale, the per-token activation quantization of ZeroQuant (Yao et al., 2022,
"ZeroQuant: Efficient and Affordable Post-Training Quantization for Large-Scale Transformers");
weights are int8 per output channel as in ``quantize_dynamic``. For a MatMul ``x @ W``
(``x``: [..., K], ``W``: a constant [K, N]):

* ``s_r = max|x_r| / 127`` per row: ``Max(ReduceMax(x), -ReduceMin(x))`` over the last axis (two
  reads, no ``|x|`` temporary); a GELU output is >= -0.17, so there ``max(ReduceMax(x), 0.17)``;
* ``q = QuantizeLinear(x, s, 128)``: uint8, a row's values in [1, 255] around the scalar zero
  point 128, in one pass on the rows flattened to [M, K] with a per-row (``axis=0``) scale;
* ``y = MatMulIntegerToFloat(q, W_q, 1, w_s, 128)`` (ONNX Runtime's contrib op, the kernel its own
  dynamic quantization runs): uint8 x int8 with a scalar activation zero point (the u8s8 fast path,
  AVX512-VNNI / AMX-INT8 / AVX2), ``W_q = round(W / w_s)``, ``w_s = max|W[:, n]| / 127`` per
  output channel, scaled by ``w_s`` in the GEMM's epilogue; the standard
  ``MatMulInteger -> Cast -> Mul(w_s)`` measured 3-5% slower end to end;
* ``out = y * s_r`` [..., N]; the MatMul's bias ``Add`` is unchanged.

MatMuls that read the same tensor (a layer's Q, K and V projections) share its quantization.
ONNX Runtime's graph optimiser keeps the rewrite (its ``MatMulIntegerToFloatFusion`` needs
``Cast -> Mul(Mul(a_scale, b_scale))``, absent here; its kernel takes only a scalar ``a_scale``).
Run ``onnx.shape_inference`` on the graph first: with the shapes known, ONNX Runtime still fuses
the bias and residual ``Add`` + ``LayerNormalization`` (``SkipLayerNormalization``) and bias + GELU.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "GELU_NEG_BOUND",
    "RowQuantResult",
    "constant_weight_matmuls",
    "quantize_rows",
    "quantize_weight",
    "reference_matmul",
]

#: Smallest row scale: an all-zero row quantizes to the zero point instead of dividing by 0.
_TINY = np.float32(1e-30)


@dataclass(frozen=True)
class RowQuantResult:
    """What ``quantize_rows`` changed: the MatMul node names, and how many activations were quantized."""

    matmuls: tuple[str, ...]
    inputs: int


def constant_weight_matmuls(model: Any) -> list[str]:
    """Names of the MatMuls whose second input is a constant 2-D float initializer (the linear layers)."""
    inits = {t.name: t for t in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and n.input[1] in inits
        and len(inits[n.input[1]].dims) == 2
        and inits[n.input[1]].data_type == 1  # FLOAT
    ]


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] float -> (int8 [K, N], per-column scale [N]); symmetric, values in [-127, 127]."""
    scale = np.abs(w).max(axis=0) / 127.0
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def reference_matmul(x: np.ndarray, w: np.ndarray, gelu: bool = False) -> np.ndarray:
    """The arithmetic of the rewritten MatMul in numpy (the tests' reference): [..., K] @ [K, N].

    ``gelu``: ``x`` is a GELU output (the row bound is ``max(max(x_r), GELU_NEG_BOUND)``).
    """
    wq, ws = quantize_weight(w)
    amax = (
        np.maximum(x.max(axis=-1, keepdims=True), GELU_NEG_BOUND)
        if gelu
        else np.abs(x).max(-1, keepdims=True)
    )
    s = np.maximum(amax, _TINY).astype(np.float32) / np.float32(127)
    q = np.clip(np.rint(x / s) + 128, 0, 255).astype(np.int32)  # rint: half to even, as QuantizeLinear
    y = (q - 128) @ wq.astype(np.int32)
    return (y.astype(np.float32) * ws * s).astype(np.float32)


#: -min GELU(x) = 0.16997 (at x = -0.7518); the bound used for a GELU output's negative side.
GELU_NEG_BOUND = 0.17


def _gelu_floor(producers: dict[str, Any], x: str, hops: int = 4) -> float | None:
    """``GELU_NEG_BOUND`` if ``x`` is a GELU output (an ``Erf``/``Gelu`` within ``hops`` producers), else None.

    A GELU output is >= -0.17, so ``max(|x_r|) <= max(max(x_r), 0.17)``: one ``ReduceMax`` instead of
    a max and a min per row (the FFN down-projection's input is the widest activation).
    """
    frontier = [x]
    for _ in range(hops):
        nodes = [producers[t] for t in frontier if t in producers]
        if any(n.op_type in ("Erf", "Gelu", "FastGelu", "BiasGelu") for n in nodes):
            return GELU_NEG_BOUND
        frontier = [i for n in nodes for i in n.input]
    return None


class _Builder:
    """New nodes and initializers for one graph, with unique names under a prefix."""

    def __init__(self, model: Any) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.model = model
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _quantize_input(b: _Builder, x: str, k: int, tag: str, floor: float | None) -> tuple[str, str]:
    """Nodes quantizing ``x`` [..., K] per row: returns (uint8 [..., K], scale [..., 1])."""
    p = f"{tag}/rowq"
    if floor is not None:
        amax = b.node(
            "Max",
            [
                b.node("ReduceMax", [x], f"{p}/max", axes=[-1], keepdims=1),
                b.const(f"{p}/floor", np.array(floor, np.float32)),
            ],
            f"{p}/amax",
        )
    else:
        hi = b.node("ReduceMax", [x], f"{p}/max", axes=[-1], keepdims=1)
        lo = b.node("ReduceMin", [x], f"{p}/min", axes=[-1], keepdims=1)
        amax = b.node("Max", [hi, b.node("Neg", [lo], f"{p}/neglo")], f"{p}/amax")  # no |x| temporary
    scale = b.node(
        "Div",
        [
            b.node("Max", [amax, b.const(f"{p}/tiny", np.array(_TINY))], f"{p}/amax_safe"),
            b.const(f"{p}/127", np.array(127.0, np.float32)),
        ],
        f"{p}/scale",
    )  # [..., 1]
    rows = b.node("Reshape", [x, b.const(f"{p}/shape_mk", np.array([-1, k], np.int64))], f"{p}/rows")
    flat = b.node("Reshape", [scale, b.const(f"{p}/shape_m", np.array([-1], np.int64))], f"{p}/scale_m")
    zps = b.node(
        "Expand",
        [b.const(f"{p}/zp128", np.array([128], np.uint8)), b.node("Shape", [flat], f"{p}/m")],
        f"{p}/zp_m",
    )
    q = b.node("QuantizeLinear", [rows, flat, zps], f"{p}/q", axis=0)  # [M, K] uint8
    q3 = b.node("Reshape", [q, b.node("Shape", [x], f"{p}/shape_x")], f"{p}/q3")  # [..., K]
    return q3, scale


def quantize_rows(model: Any, names: Collection[str] | None = None) -> RowQuantResult:
    """Rewrite the MatMuls ``names`` (default: every MatMul with a constant weight) of ``model`` in place.

    Weights are stored as int8 (the float initializers a rewritten MatMul alone used are removed).
    """
    chosen = set(constant_weight_matmuls(model) if names is None else names)
    inits = {t.name: t for t in model.graph.initializer}
    b = _Builder(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    shared: dict[str, tuple[str, str]] = {}
    done: list[str] = []
    keep: list[Any] = []
    for node in model.graph.node:
        if node.name not in chosen:
            keep.append(node)
            continue
        x, w_name = node.input[0], node.input[1]
        w = b.numpy_helper.to_array(inits[w_name]).astype(np.float32)
        if x not in shared:
            shared[x] = _quantize_input(b, x, w.shape[0], node.name, _gelu_floor(producers, x))
        q, scale = shared[x]
        wq, ws = quantize_weight(w)
        p = f"{node.name}/rowq"
        azp = b.const(f"{p}/azp", np.array(128, np.uint8))
        one = b.const(f"{p}/one", np.array(1.0, np.float32))
        yw = b.node(  # float(q @ W_q) * w_s: [..., N]
            "MatMulIntegerToFloat",
            [q, b.const(f"{p}/w_int8", wq), one, b.const(f"{p}/w_scale", ws), azp],
            f"{p}/yw",
            domain="com.microsoft",
        )
        b.nodes.append(b.helper.make_node("Mul", [yw, scale], [node.output[0]], name=f"{p}/out"))
        keep.extend(b.nodes)
        b.nodes.clear()
        done.append(node.name)
    missing = chosen - set(done)
    if missing:
        raise ValueError(f"quantize_rows: no MatMul with a constant weight named {sorted(missing)}")
    used = {i for n in keep for i in n.input}
    del model.graph.node[:]
    model.graph.node.extend(keep)
    old = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(old + b.inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(b.helper.make_opsetid("com.microsoft", 1))
    return RowQuantResult(tuple(done), len(shared))
