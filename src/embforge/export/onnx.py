"""``embforge export --format onnx``: one ONNX graph with every head of an encoder.

The graph (``onnx/model.onnx``) maps ``input_ids`` and ``attention_mask`` (dynamic batch and
sequence axes) to ``last_hidden_state`` and each head's fields, in the order of the head registry
(``Encoder.head_outputs``: dense vector, per-token sparse weights, multi-vectors with their mask,
plugin heads by name): one backbone pass for all heads, as in BGE-M3 (Chen et al., 2024,
"BGE M3-Embedding"). Beside it: the tokenizer, the backbone's ``config.json``,
``embforge_onnx.json``, the head weights, and the sentence-transformers module files, so that
``SentenceTransformer(folder, backend="onnx")`` loads the dense part from the same graph.

``quantize``:

* ``int8``: dynamic quantization (Jacob et al., 2018, "Quantization and Training of Neural Networks
  for Efficient Integer-Arithmetic-Only Inference"): int8 weights per output channel, activations
  quantized at run time. The FFN down-projections and the heads (``INT8_PER_ROW``) get one
  activation scale PER TOKEN (``embforge.export.int8_rows``, ZeroQuant's per-token scheme); the
  other MatMuls ONNX Runtime's ``quantize_dynamic`` (one scale per whole batch tensor, where one
  outlier token, Dettmers et al., 2022, "LLM.int8()", coarsens every other token's grid). Chosen on
  the bundled MiniLM with all three heads by fidelity to the fp32 graph on 240 held-apart TRAINING
  texts of the bundled XQuAD sets (odd article numbers) and by speed, then checked on the test
  questions (tests/unit/export/test_onnx_quality.py). Mean dense cosine / mean token cosine to fp32:

  - one scale per tensor, every MatMul: 0.9918 / 0.9830;
  - the previous default, layer 0's FFN down-projection fp32: 0.9938 / 0.9865; all six fp32
    0.9960 / 0.9896 (+29% time);
  - per-token FFN down + heads (the default): 0.9953 / 0.9924;
  - per-token FFN up + down + heads: 0.9971 / 0.9969; per-token everywhere: 0.9970 / 0.9972;
  - (torch simulation, fake-quantized) per-token FFN down alone 0.9953 / 0.9888, Q/K/V alone or
    attention-out alone no gain (0.9917, 0.9919): the outlier tokens matter in the FFN and heads;
  - ONNX Runtime's ``MatMulNBits`` 8-bit with int8 compute (activations per 32- or 128-block):
    0.9997 / 0.9996 and 0.9991 / 0.9990, but 2.4x and 2.0x the time (its 8-bit kernel is slow);
  - earlier: SmoothQuant (Xiao et al., 2023) on the down-projection input, alpha 0.5 / 0.75:
    0.9803 / 0.9650, 0.9889 / 0.9780; static QDQ: 0.9165 / 0.8255; ``reduce_range``: worse.

  Cost, ONNX Runtime sessions, 2 threads, 320 of bench/encode_onnx.py's texts, 9 interleaved
  rounds, best (median) under the bench lock: per tensor 4.02 (4.62) s; layer 0 fp32 4.03 (4.74) s;
  per-token FFN down + heads 4.14 (4.70) s; + FFN up 4.35 (5.04) s (+8%); everywhere 5.12 (5.50) s
  (+27%): the per-token quantization, the row scale ``Mul`` and the lost bias fusion are extra
  passes, and ``onnx_int8_vs_st`` (3.14 with the previous default) leaves ~4% to spend.
  nDCG@10 against torch fp32 on the training questions (dev), default: xquad-de dense -0.0035
  (bootstrap sd of the per-query mean 0.0032), xquad-en +0.0021 (0.0017), xquad-es -0.0069 (0.0033),
  hybrid within 0.0026. Calibration texts (SmoothQuant, static) came from the even-numbered articles.
  Independent check (bench/int8_confirm.py, bench/results/int8_confirm.md): the nine XQuAD languages
  not bundled (all 1190 questions each; translations of the same English questions, but other text
  and tokens) and 40 DBpedia queries on 1000 documents. + FFN up has the higher dense cosine on all
  ten sets (mean 0.9965 vs 0.9945) but not the closer nDCG@10: mean |delta| over the sets dense
  0.0030 vs 0.0038, multivector 0.0044 vs 0.0041, hybrid 0.0044 vs 0.0044; it is further off on
  xquad-hi (hybrid -0.0176 vs -0.0099, dense -0.0063 vs -0.0021) and closer on xquad-el (hybrid
  -0.0018 vs -0.0070), each outside its paired bootstrap's 95% interval; pooled over the sets, every
  head's bootstrap interval of the |delta| difference includes 0. So the default stays. Both
  variants are more than 0.01 off on some set (default: xquad-zh dense -0.0105, dbpedia hybrid -0.0109,
  xquad-hi multivector -0.0124): per-set nDCG noise of int8 MiniLM is about the gate's 1 point.
  **SmoothQuant** (the default since; ``embforge.export.smooth``, Xiao et al., 2023): the inputs of
  Q/K/V and the FFN up projection, the LayerNorm outputs whose few large channels set their one
  per-tensor scale, are divided per channel by ``s`` and the weight rows multiplied by it (one ``Mul``
  per smoothed tensor, channel ranges from seeded random vocabulary words). Dev texts: dense / token
  cosine 0.9954 / 0.9926 -> 0.9977 / 0.9968. Independent check, the same ten sets
  (bench/results/int8_smooth_confirm.md): dense cosine mean 0.9945 -> 0.9974 (min 0.9781 -> 0.9879),
  mean |delta nDCG@10| dense 0.0038 -> 0.0029, multivector 0.0041 -> 0.0029, hybrid 0.0044 -> 0.0020
  (closer on 9 of 10 sets; pooled paired bootstrap +0.0025 [+0.0007, +0.0043]), largest |delta| on any
  set and head 0.0124 -> 0.0076. Chosen on the dev texts and these sets, then run on the gate.
* ``fp16``: weights and compute in float16 with float32 inputs and outputs
  (``onnxruntime.transformers.float16``; worthwhile on GPUs, emulated on most CPUs);
* ``bf16`` is refused with the reason: ONNX Runtime's CPU provider has no bfloat16 kernels for
  MatMul/Gemm, so such a graph cannot run there; bf16 on AMX CPUs is the torch backend's
  ``dtype="bf16"`` (``embforge.model.precision``).

The graph is traced with the backbone's EAGER attention (``_eager_attention``): the explicit
``softmax(QK^T/sqrt(d) + mask) V`` pattern is what ONNX Runtime's graph optimiser fuses into its
``Attention`` kernel, while the SDPA trace is not fused. Measured on an AMX Xeon (2 threads,
MiniLM, 400 real texts): fp32 6.13 -> 5.11 s, dynamic int8 3.92 -> 2.48 s, same outputs
(max |diff| to torch 2.8e-5 on the hidden states, 1.6e-7 on the dense vectors).

The folder is written to a temporary sibling and renamed into place (atomic).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embforge.atomic import give_user_modes
from embforge.errors import ConfigError, MissingDependencyError
from embforge.export.int8_rows import constant_weight_matmuls, quantize_rows
from embforge.export.smooth import (
    SMOOTH_ALPHA,
    SMOOTH_GROUPS,
    calibration_batches,
    calibration_texts,
    channel_absmax,
    smooth_matmuls,
    smoothed_inputs,
)
from embforge.model.checkpoint import ST_POOLING_MODES, trained_heads, write_st_files
from embforge.model.encoder import Encoder
from embforge.model.onnx_encoder import (
    GRAPH_FILE,
    HEADS_FILE,
    ONNX_CONFIG,
    OnnxMeta,
    load_onnx_encoder,
)
from embforge.types import Batch

__all__ = [
    "FORMATS",
    "INT8_GROUPS",
    "INT8_PER_ROW",
    "QUANTIZE",
    "ExportResult",
    "export_onnx",
    "ffn_down_matmuls",
    "matmul_groups",
]

logger = logging.getLogger("embforge")

FORMATS = ("onnx",)
QUANTIZE = ("int8", "fp16", "bf16")
#: ONNX opset of the graph (ONNX Runtime >= 1.14 runs it).
OPSET = 17
#: int8: MatMul groups (``matmul_groups``) whose activations can be quantized per row.
INT8_GROUPS = ("attention", "attention_out", "ffn_up", "ffn_down", "heads")
#: int8 default: these groups get per-row activation scales (``int8_rows``), the others one per tensor.
INT8_PER_ROW = ("ffn_down", "heads")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote.

    Attributes:
        path: the folder.
        precision: "fp32", "int8" or "fp16".
        outputs: the graph's output names.
        graph_bytes: size of the graph file(s).
        max_abs_diff: per graph output, max |ONNX - torch fp32| on a check batch (the exported folder
            reloaded through ``Encoder.from_pretrained``).
        seconds: wall time of the export.
    """

    path: Path
    precision: str
    outputs: tuple[str, ...]
    graph_bytes: int
    max_abs_diff: dict[str, float]
    seconds: float


class _AllHeads(nn.Module):
    """The traced function: one backbone pass, then every head (``Encoder.head_outputs``)."""

    def __init__(self, enc: Encoder, fields: Sequence[str]) -> None:
        super().__init__()
        self.enc = enc
        self.fields = tuple(fields)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = Batch(input_ids=input_ids, attention_mask=attention_mask)
        hidden = self.enc.hidden_states(batch)
        out = self.enc.head_outputs(hidden, batch, self.enc.heads)
        return (hidden, *(out[f] for f in self.fields))


def _check_batch(enc: Encoder) -> Batch:
    texts = [
        "ONNX export check",
        "Eine etwas längere Eingabe, damit die Sequenzlänge dynamisch sein muss.",
        "短い",
    ]
    return enc.tokenize(texts, role="document", max_length=min(64, enc.max_length))


def export_onnx(
    model: Encoder | str | os.PathLike | None,
    out: str | os.PathLike,
    quantize: str | None = None,
    heads: Sequence[str] | None = None,
    overwrite: bool = False,
    int8_per_row: Sequence[str] = INT8_PER_ROW,
    int8_smooth: float | None = SMOOTH_ALPHA,
    calibration: Sequence[str] | None = None,
) -> ExportResult:
    """Export ``model`` (an ``Encoder``, a checkpoint path or hub id; None = the bundled MiniLM) to ``out``.

    ``heads``: the heads in the graph (default: those the checkpoint has trained weights for, as
    ``--heads auto``; an ``Encoder``: all it has). ``quantize``: None (fp32), "int8" or "fp16".
    ``overwrite``: replace an existing folder. ``int8_per_row``: with int8, the MatMul groups
    (``INT8_GROUPS``) whose activations get one scale per token instead of one per tensor.
    ``int8_smooth``: with int8, the SmoothQuant alpha of the inputs of ``SMOOTH_GROUPS``
    (``embforge.export.smooth``; None: no smoothing). ``calibration``: texts for the smoothing's channel
    maxima (default: seeded random vocabulary words, ``calibration_texts``). Returns what was written,
    with the fidelity of the reloaded export against the torch model on a check batch.
    """
    start = time.perf_counter()
    precision = _check_quantize(quantize)
    target = Path(out)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists; pass another output folder, or overwrite=True (--overwrite)")
    enc = _load(model, heads)
    target.parent.mkdir(parents=True, exist_ok=True)  # the temp folder sits beside the target: one rename
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        int8 = _Int8Options(
            tuple(int8_per_row), int8_smooth, None if calibration is None else list(calibration)
        )
        outputs = _write_folder(enc, tmp, precision, int8)
        diffs = _fidelity(enc, tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in (target / "onnx").iterdir())
    logger.info("exported %s (%s, %.1f MB): max |onnx - torch| %s", target, precision, size / 1e6, diffs)
    return ExportResult(target, precision, outputs, size, diffs, time.perf_counter() - start)


def _check_quantize(quantize: str | None) -> str:
    if quantize is None or quantize == "fp32":
        return "fp32"
    if quantize not in QUANTIZE:
        raise ConfigError(f"unknown --quantize {quantize!r}; choose from: {', '.join(QUANTIZE)}")
    if quantize == "bf16":
        raise ConfigError(
            "--quantize bf16: ONNX Runtime's CPU provider has no bfloat16 MatMul/Gemm kernels, so a bf16 graph "
            "cannot run there; use --quantize int8 (ONNX) or the torch backend with --dtype bf16 on AMX CPUs"
        )
    return quantize


def _load(model: Encoder | str | os.PathLike | None, heads: Sequence[str] | None) -> Encoder:
    if isinstance(model, Encoder):
        enc = model
    else:
        src = None if model is None else str(model)
        enc = Encoder.from_pretrained(
            src, heads=tuple(heads) if heads else trained_heads(src), backend="torch"
        )
    if getattr(enc, "backend", "torch") != "torch":
        raise ConfigError(
            "export needs the torch checkpoint, not an ONNX export; pass the model it came from"
        )
    return enc.eval()


@dataclass(frozen=True)
class _Int8Options:
    """``export_onnx``'s int8 choices: per-row groups, smoothing alpha (None: off), calibration texts."""

    per_row: tuple[str, ...] = INT8_PER_ROW
    smooth: float | None = SMOOTH_ALPHA
    calibration: list[str] | None = None


def _write_folder(enc: Encoder, root: Path, precision: str, int8: _Int8Options) -> tuple[str, ...]:
    """Tokenizer, configs, head weights, sentence-transformers files and the graph into ``root``."""
    from safetensors.torch import save_file

    backbone: Any = enc.backbone  # a transformers PreTrainedModel
    enc.tokenizer.save_pretrained(str(root))
    _tokenizer_limit(root / "tokenizer_config.json", enc.max_length)
    backbone.config.save_pretrained(str(root))
    if enc.config.pooling in ST_POOLING_MODES:
        write_st_files(enc, root)
    else:  # e.g. NV-Embed's latent attention: the graph has it, sentence-transformers has no such module
        logger.info(
            "export: pooling %r has no sentence-transformers equivalent; the folder loads in embforge only",
            enc.config.pooling,
        )
    state = {
        f"{name}.{k}": v.detach().cpu().contiguous().clone()
        for name in enc.heads
        for k, v in enc.head(name).state_dict().items()
    }
    save_file(state, str(root / HEADS_FILE))
    graph = root / GRAPH_FILE
    graph.parent.mkdir()
    outputs = _export_graph(enc, graph)
    if precision == "int8":
        if int8.smooth is not None:
            _smooth_int8(enc, graph, int8.smooth, int8.calibration)
        _quantize_int8(graph, int8.per_row)
    elif precision == "fp16":
        _to_fp16(graph)
    meta = OnnxMeta(enc.config, outputs, precision, backbone.config.to_dict(), OPSET)
    (root / ONNX_CONFIG).write_text(json.dumps(meta.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    return outputs


def _tokenizer_limit(file: Path, max_length: int) -> None:
    """Write the encoder's truncation length as ``max_length`` in ``tokenizer_config.json``.

    Runtimes that read only the tokenizer files take ``min(model_max_length, max_length)`` as their
    truncation limit (fastembed's ``load_tokenizer``). all-MiniLM-L6-v2 ships ``max_length: 128``
    (a leftover of its training setup) while the model encodes up to ``max_seq_length`` 256, so
    fastembed on an export that kept it cut every text longer than 128 tokens: measured on the
    2,000 bench texts, the 140 texts over 128 tokens differed (cosine down to 0.51), the 1,860 others
    matched. The encoder's own limit here makes every runtime truncate alike.
    """
    if not file.is_file():
        return
    cfg = json.loads(file.read_text(encoding="utf-8"))
    if cfg.get("max_length") not in (None, max_length):
        logger.info(
            "export: tokenizer_config.json max_length %s -> %d (the encoder's)", cfg["max_length"], max_length
        )
    cfg["max_length"] = max_length
    file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _export_graph(enc: Encoder, graph: Path) -> tuple[str, ...]:
    """Trace ``_AllHeads`` to ``graph`` (fp32); returns the output names."""
    import warnings

    batch = _check_batch(enc)
    with torch.inference_mode():
        sample = enc.head_outputs(enc.hidden_states(batch), batch, enc.heads)
    fields = tuple(sample)
    outputs = ("last_hidden_state", *fields)
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "sequence"}}
    axes["attention_mask"] = axes["input_ids"]
    tokens = batch.input_ids.shape[1]
    for name, value in zip(fields, sample.values()):  # axis 1 of a per-token output (T or T-1) is dynamic
        per_token = value.dim() > 1 and value.shape[1] in (tokens, tokens - 1)
        axes[name] = {
            0: "batch",
            **({1: "sequence" if value.shape[1] == tokens else f"{name}_tokens"} if per_token else {}),
        }
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), _eager_attention(enc):  # the exporter warns about traced conditions
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _AllHeads(enc, fields).eval(),  # the exporter restores the wrapper's mode on enc afterwards
            (batch.input_ids, batch.attention_mask),
            str(graph),
            input_names=["input_ids", "attention_mask"],
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: 0.3 s vs 10 s for a tiny model, same graph values
        )
    return outputs


@contextlib.contextmanager
def _eager_attention(enc: Encoder) -> Iterator[None]:
    """The backbone with eager attention while tracing (ONNX Runtime fuses that pattern), restored after."""
    backbone: Any = enc.backbone
    before = getattr(backbone.config, "_attn_implementation", None)
    switch = getattr(backbone, "set_attn_implementation", None)
    if before in (None, "eager") or switch is None:
        yield
        return
    try:
        switch("eager")
    except (ValueError, ImportError):  # a backbone without an eager path: trace what it has
        logger.info("export: %s has no eager attention; tracing %s", type(backbone).__name__, before)
        yield
        return
    try:
        yield
    finally:
        switch(before)


def _smooth_int8(enc: Encoder, graph: Path, alpha: float, texts: list[str] | None) -> None:
    """SmoothQuant the inputs of the ``SMOOTH_GROUPS`` MatMuls in place (``embforge.export.smooth``).

    A graph whose weights are external data (over 2 GB in fp32, e.g. BGE-M3) is written back the
    same way, into one data file beside it (the tracer's per-tensor files are removed)."""
    import onnx

    head = onnx.load(str(graph), load_external_data=False)
    groups = matmul_groups(head)
    names = [n for g in SMOOTH_GROUPS for n in groups[g]]
    if texts is None:
        texts = calibration_texts(enc.tokenizer)
    if not texts:
        raise ConfigError("int8 calibration: no texts; pass at least one text (one a line)")
    inputs = [i.name for i in head.graph.input]
    batches = calibration_batches(enc.tokenizer, texts, inputs, max_length=min(enc.max_length, 512))
    amax = channel_absmax(graph, smoothed_inputs(head, names), batches)
    old_files = _external_files(head, graph.parent)
    model = onnx.load(str(graph))
    res = smooth_matmuls(model, names, amax, alpha)
    logger.info(
        "export int8: smoothed %d activation tensors (%d MatMuls, alpha %.2f, %d calibration texts)",
        len(res.tensors), len(res.matmuls), alpha, len(texts),
    )  # fmt: skip
    if not old_files:
        onnx.save(model, str(graph))
        return
    data = graph.with_name(graph.name + ".data")
    onnx.save_model(
        model, str(graph), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name
    )
    for f in old_files - {data}:
        f.unlink(missing_ok=True)


def _external_files(model: Any, root: Path) -> set[Path]:
    """The external data files the graph's initializers point to (none for a graph under 2 GB)."""
    from onnx.external_data_helper import uses_external_data

    out = set()
    for t in model.graph.initializer:
        if uses_external_data(t):
            loc = next((e.value for e in t.external_data if e.key == "location"), None)
            if loc:
                out.add(root / loc)
    return out


def _quantize_int8(graph: Path, per_row: Sequence[str] = INT8_PER_ROW) -> None:
    """int8 in place: the MatMuls of the groups ``per_row`` (``matmul_groups``) with per-row activation
    scales (``int8_rows.quantize_rows``), every other MatMul/Gemm by ONNX Runtime's ``quantize_dynamic``
    (one activation scale per tensor)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    unknown = sorted(set(per_row) - set(INT8_GROUPS))
    if unknown:
        raise ConfigError(f"int8 per-row groups {unknown} unknown; choose from: {', '.join(INT8_GROUPS)}")
    head = onnx.load(str(graph), load_external_data=False)  # the graph without its weights
    groups = matmul_groups(head)
    fp32_data = _external_files(head, graph.parent)  # the weight files of a graph over 2 GB
    rows = [n for g in per_row for n in groups[g]]
    logger.info("export int8: per-row activation scales for %d MatMuls (%s)", len(rows), ", ".join(per_row))
    fp32 = graph.with_name("model_fp32.onnx")
    graph.rename(fp32)
    quantize_dynamic(
        fp32,
        graph,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
        nodes_to_exclude=rows,
    )
    fp32.unlink()
    for f in fp32_data:  # the int8 graph holds its own weights
        f.unlink(missing_ok=True)
    if rows:
        model = onnx.load(str(graph))
        with contextlib.suppress(ValueError):  # > 2 GB: no shapes, ORT then fuses less around the rewrite
            model = onnx.shape_inference.infer_shapes(model)
        quantize_rows(model, rows)
        onnx.save(model, str(graph))


def matmul_groups(model: Any) -> dict[str, list[str]]:
    """The MatMuls with a constant weight (``int8_rows.constant_weight_matmuls``) by role, from the module
    paths the exporter writes into node names: ``attention`` (Q/K/V), ``attention_out``, ``ffn_up``,
    ``ffn_down`` (``ffn_down_matmuls``), ``heads`` (outside ``/backbone/``), ``other``."""
    down = set(ffn_down_matmuls(model))
    out: dict[str, list[str]] = {g: [] for g in (*INT8_GROUPS, "other")}
    for name in constant_weight_matmuls(model):
        if name in down:
            group = "ffn_down"
        elif not name.startswith("/backbone/"):
            group = "heads"
        elif re.search(r"/attention/self/|/(q|k|v)_proj/|/self_attn/(q|k|v)", name):
            group = "attention"
        elif re.search(r"/attention/output/dense/|/o_proj/|/out_proj/", name):
            group = "attention_out"
        elif re.search(r"/intermediate/dense/|/up_proj/|/gate_proj/|/fc1/", name):
            group = "ffn_up"
        else:
            group = "other"
        out[group].append(name)
    return out


def ffn_down_matmuls(model: Any) -> list[str]:
    """Names of the FFN down-projection MatMuls of an exported graph, in layer order.

    Their input is the GELU output, whose few large channels (the activation outliers of
    Dettmers et al., 2022, "LLM.int8()") set the per-tensor scale of dynamic int8 quantization, so
    these are the MatMuls that lose most in int8. Found by the module path the exporter writes into
    node names: BERT/XLM-R ``encoder/layer.N/output/dense`` (not ``attention/output/dense``),
    Llama/Qwen-style ``mlp/down_proj``, GPT/OPT-style ``fc2``.
    """

    def layer(name: str) -> int:
        m = re.search(r"layers?\.(\d+)/", name)
        return int(m.group(1)) if m else -1

    names = [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul"
        and (
            ("/output/dense/" in n.name and "/attention/" not in n.name)
            or "/down_proj/" in n.name
            or "/fc2/" in n.name
        )
    ]
    return sorted(names, key=layer)


def _to_fp16(graph: Path) -> None:
    """Float16 weights and compute, float32 inputs and outputs."""
    import onnx

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:  # pragma: no cover - shipped with onnxruntime
        raise MissingDependencyError("onnxruntime", "--quantize fp16") from None
    model = convert_float_to_float16(onnx.load(str(graph)), keep_io_types=True)
    onnx.save(model, str(graph))


def _fidelity(enc: Encoder, root: Path) -> dict[str, float]:
    """Max |ONNX - torch| per graph output on the check batch, through the reloaded folder."""
    batch = _check_batch(enc)
    onnx_enc = load_onnx_encoder(root)
    names = list(onnx_enc.meta.outputs)
    got = onnx_enc.onnx_backbone.run(names, batch.input_ids, batch.attention_mask)
    with torch.inference_mode():
        hidden = enc.hidden_states(batch)
        want = {"last_hidden_state": hidden, **enc.head_outputs(hidden, batch, enc.heads)}
    return {
        n: float(np.max(np.abs(np.asarray(g, dtype=np.float64) - want[n].double().numpy()), initial=0.0))
        for n, g in zip(names, got)
    }


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    give_user_modes(tmp)  # mkdtemp's 0700: the modes of files the user creates (umask)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
