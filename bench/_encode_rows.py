"""One timed row of bench/encode_onnx.py, run in its own process (and venv): ``python _encode_rows.py ROW ARGS_JSON``.

Self-contained on purpose: it runs in the main venv (embforge, sentence-transformers torch), in
.venv-ref (FlagEmbedding 1.4.2, transformers 4.57) and in the bench-only venv with
optimum/fastembed (sentence-transformers' ONNX backend), so it imports embforge only in the rows
that need it. It writes ``{row, wall_s, cpu_s, n, load_before, load_after, ...}`` JSON and the
dense vectors (.npy) for the cosine checks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402


def _embforge(a: dict, model: str, heads: tuple[str, ...], dtype: str = "fp32"):
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(model, heads=heads)
    kw = {"heads": heads, "dtype": dtype, "max_length": a.get("max_length")}
    return (lambda texts: enc.encode(texts, **kw)), (lambda out: out.dense), getattr(enc, "precision", dtype)


def _st(a: dict, backend: str, file_name: str | None = None):
    from sentence_transformers import SentenceTransformer

    kw = {"model_kwargs": {"file_name": file_name}} if file_name else {}
    st = SentenceTransformer(a["st_model"], device="cpu", backend=backend, **kw)
    return (lambda texts: st.encode(texts, batch_size=32)), (lambda out: out), file_name or backend


def _flag(a: dict):
    from FlagEmbedding import BGEM3FlagModel

    flag = BGEM3FlagModel(a["m3_model"], devices="cpu", use_fp16=False)
    kw = {"return_dense": True, "return_sparse": True, "return_colbert_vecs": True, "max_length": 512}
    return (lambda texts: flag.encode(texts, **kw)), (lambda out: out["dense_vecs"]), "fp32"


def _fastembed(a: dict):
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "embforge/onnx-export"
    TextEmbedding.add_custom_model(
        model=name, pooling=PoolingType.MEAN, normalization=True, sources=ModelSource(hf=name), dim=384
    )
    fe = TextEmbedding(model_name=name, specific_model_path=a["onnx_model"], threads=a["threads"])
    return (lambda texts: np.stack(list(fe.embed(texts, batch_size=32)))), (lambda out: out), "fp32"


def _gemm_peaks(a: dict) -> dict:
    """Measured GEMM FLOP/s of each precision on ``threads`` threads (the MFU denominators), and the
    model FLOPs of the dense (MiniLM, its max length) and three-head (max 512) workloads on these texts."""
    import torch

    from embforge.model.encoder import Encoder
    from embforge.text.tokenize import tokenize_texts
    from encode import model_flops

    n, reps = a.get("peak_n", 2048), a.get("peak_reps", 8)
    peaks = {"fp32": _torch_peak(torch.float32, n, reps), "bf16": _torch_peak(torch.bfloat16, n, reps)}
    peaks["int8"] = _ort_int8_peak(n, reps, a["threads"])
    texts = json.loads(Path(a["texts"]).read_text(encoding="utf-8"))
    flops = {}
    for key, model, limit in (("dense", a["model"], None), ("m3", a["m3_model"], 512)):
        enc = Encoder.from_pretrained(model)
        tok = tokenize_texts(enc.tokenizer, texts, enc.check_max_length(limit))
        flops[key] = model_flops(enc.backbone, np.asarray(tok.lengths))
    return {"peaks": peaks, "flops": flops, "gemm_n": n}


def _torch_peak(dtype, n: int, reps: int) -> float:
    import torch

    x, y = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        x @ y
    t = time.perf_counter()
    for _ in range(reps):
        x @ y
    return 2 * n**3 * reps / (time.perf_counter() - t)


def _ort_int8_peak(n: int, reps: int, threads: int) -> float:
    """ONNX Runtime's MatMulInteger (uint8 x int8 -> int32, the op its dynamic int8 graphs run)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph(
        [node],
        "peak",
        [
            helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
            helper.make_tensor_value_info("B", TensorProto.INT8, [n, n]),
        ],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {
        "A": rng.integers(0, 255, (n, n), dtype=np.uint8),
        "B": rng.integers(-127, 127, (n, n), dtype=np.int8),
    }
    for _ in range(2):
        sess.run(None, feed)
    t = time.perf_counter()
    for _ in range(reps):
        sess.run(None, feed)
    return 2 * n**3 * reps / (time.perf_counter() - t)


ROWS = {
    "st_fp32": lambda a: _st(a, "torch"),
    "st_onnx_fp32": lambda a: _st(a, "onnx"),
    "st_onnx_int8": lambda a: _st(a, "onnx", "onnx/model_qint8_avx512_vnni.onnx"),
    "embforge_torch_fp32": lambda a: _embforge(a, a["model"], ("dense",)),
    "embforge_torch_bf16": lambda a: _embforge(a, a["model"], ("dense",), "bf16"),
    "embforge_onnx_fp32": lambda a: _embforge(a, a["onnx_model"], ("dense",)),
    "embforge_onnx_int8": lambda a: _embforge(a, a["onnx_int8_model"], ("dense",)),
    "embforge_m3_torch_fp32": lambda a: _embforge(
        {**a, "max_length": 512}, a["m3_model"], ("dense", "sparse", "multivector")
    ),
    "embforge_m3_onnx_int8": lambda a: _embforge(
        {**a, "max_length": 512}, a["m3_onnx_int8_model"], ("dense", "sparse", "multivector")
    ),
    "flag_m3_fp32": _flag,
    "fastembed_onnx_fp32": _fastembed,
}


def main() -> None:
    row, args = sys.argv[1], json.loads(Path(sys.argv[2]).read_text())
    import torch

    torch.set_num_threads(args["threads"])
    if row == "gemm_peak":
        load0, c, t = os.getloadavg(), time.process_time(), time.perf_counter()
        res = _gemm_peaks(args)
        res |= {"row": row, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
        res |= {"load_before": load0[0], "load_after": os.getloadavg()[0]}
        (Path(args["out_dir"]) / "gemm_peak.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
        print(json.dumps(res))
        return
    texts = json.loads(Path(args["texts"]).read_text(encoding="utf-8"))
    run, dense, precision = ROWS[row](args)
    run(texts[:: max(1, len(texts) // 64)])  # warm-up (not timed)
    best = None
    for _ in range(args["repeats"]):
        load0, c, t = os.getloadavg(), time.process_time(), time.perf_counter()
        out = run(texts)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if best is None or wall < best["wall_s"]:
            best = {"wall_s": wall, "cpu_s": cpu, "load_before": load0[0], "load_after": os.getloadavg()[0]}
    vecs = np.asarray(dense(out), dtype=np.float32)
    np.save(Path(args["out_dir"]) / f"{row}.npy", vecs)
    res = {"row": row, "n": len(texts), "precision": str(precision), "python": sys.executable, **(best or {})}
    (Path(args["out_dir"]) / f"{row}.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
