"""An ``Encoder`` whose backbone and heads run in ONNX Runtime (a folder written by ``embforge export``).

The folder holds ONE graph, ``onnx/model.onnx``: inputs ``input_ids`` and ``attention_mask``
(dynamic batch and sequence axes), outputs ``last_hidden_state`` and every head the model has
(``dense`` before Matryoshka truncation, ``sparse`` per-token weights, ``multivector`` with its
``multivector_mask``, plugin heads by name), plus ``embforge_onnx.json`` (the encoder config, the
graph's outputs, its precision), the tokenizer and ``embforge_heads.safetensors`` (the head
weights). ``OnnxEncoder`` keeps the ``Encoder`` API: ``encode`` reads the heads from the graph;
Matryoshka truncation is applied to the graph's dense vector (``scoring.truncate_dense``), and
inputs the graph cannot express (MCLS [CLS] positions, a pooling mask without the prefix) run the
torch heads on the graph's ``last_hidden_state``.

The same folder is a sentence-transformers model for its ONNX backend
(``SentenceTransformer(folder, backend="onnx")`` reads ``onnx/model.onnx``'s ``last_hidden_state``
and pools it with ``1_Pooling``), which is how its dense part is checked against that library.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from embforge.errors import CheckpointError, ConfigError
from embforge.model.checkpoint import ONNX_CONFIG
from embforge.model.config import EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.precision import cpu_units
from embforge.scoring import truncate_dense
from embforge.types import Batch

__all__ = [
    "GRAPH_FILE",
    "HEADS_FILE",
    "ONNX_CONFIG",
    "ONNX_FORMAT_VERSION",
    "OnnxEncoder",
    "OnnxMeta",
    "is_onnx_folder",
    "load_onnx_encoder",
    "read_onnx_meta",
]

logger = logging.getLogger("embforge")

#: Marker and config of an exported folder.
ONNX_FORMAT_VERSION = 1
#: The one graph, where sentence-transformers' ONNX backend looks for it.
GRAPH_FILE = "onnx/model.onnx"
#: Head weights (safetensors), for inputs the graph cannot express (MCLS, pool masks).
HEADS_FILE = "embforge_heads.safetensors"


@dataclass(frozen=True)
class OnnxMeta:
    """``embforge_onnx.json``: what the graph computes.

    Attributes:
        encoder: the encoder config (heads, pooling, prefixes, limits).
        outputs: graph output names, ``last_hidden_state`` first, then the heads' fields.
        precision: "fp32", "int8" or "fp16" (how the graph's weights are stored and computed).
        backbone: the HF config of the backbone (``config.json`` beside it holds the same).
        opset: ONNX opset of the graph.
    """

    encoder: EncoderConfig
    outputs: tuple[str, ...]
    precision: str
    backbone: dict[str, Any]
    opset: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "embforge-onnx",
            "format_version": ONNX_FORMAT_VERSION,
            "encoder": self.encoder.to_dict(),
            "outputs": list(self.outputs),
            "precision": self.precision,
            "backbone": self.backbone,
            "opset": self.opset,
        }


def is_onnx_folder(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder written by ``embforge export --format onnx``."""
    return (Path(path) / ONNX_CONFIG).is_file()


def read_onnx_meta(path: str | os.PathLike) -> OnnxMeta:
    """Read and check ``embforge_onnx.json`` of an exported folder."""
    file = Path(path) / ONNX_CONFIG
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: cannot read ({type(e).__name__}: {e}); re-export the model") from None
    if not isinstance(d, dict) or d.get("format_version") != ONNX_FORMAT_VERSION:
        got = d.get("format_version") if isinstance(d, dict) else d
        raise CheckpointError(
            f"{file}: format_version {got!r} is not supported (this embforge reads {ONNX_FORMAT_VERSION}); "
            "re-export the model with `embforge export`"
        )
    return OnnxMeta(
        encoder=EncoderConfig.from_dict(d.get("encoder", {}), str(file)),
        outputs=tuple(d.get("outputs", [])),
        precision=str(d.get("precision", "fp32")),
        backbone=dict(d.get("backbone", {})),
        opset=int(d.get("opset", 0)),
    )


class _Output:
    """What ``OnnxBackbone`` returns: the field ``Encoder.hidden_states`` reads."""

    def __init__(self, last_hidden_state: torch.Tensor) -> None:
        self.last_hidden_state = last_hidden_state


class OnnxBackbone(nn.Module):
    """The ONNX graph in the place of the HF backbone: ``forward`` returns ``last_hidden_state``.

    ``config`` is the backbone's HF config (hidden size, vocab, positions), so every ``Encoder``
    property works unchanged. It has no parameters and no gradient. ``traced_graph``: its attention
    pattern (e.g. a decoder made bidirectional before the export) is fixed in the graph, so backbone
    adapters leave it alone.
    """

    traced_graph = True

    def __init__(self, session: ort.InferenceSession, config: Any) -> None:
        super().__init__()
        self.session = session
        self.config = config

    def run(
        self, names: Sequence[str], input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> list[np.ndarray]:
        feed = {
            "input_ids": input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        }
        return list(self.session.run(list(names), feed))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> _Output:
        (hidden,) = self.run(["last_hidden_state"], input_ids, attention_mask)
        return _Output(torch.from_numpy(np.asarray(hidden, dtype=np.float32)))


class OnnxEncoder(Encoder):
    """``Encoder`` on an exported folder: the same ``encode`` / ``similarity`` API, run by ONNX Runtime.

    Inference only: ``forward`` gives values without gradients; train and save the torch checkpoint
    it was exported from.
    """

    backend = "onnx"

    def __init__(self, backbone: OnnxBackbone, tokenizer: Any, config: EncoderConfig, meta: OnnxMeta) -> None:
        super().__init__(backbone, tokenizer, config)
        self.meta = meta
        self.requires_grad_(False)

    @property
    def onnx_backbone(self) -> OnnxBackbone:
        return self.backbone  # type: ignore[return-value]  # set in __init__, always an OnnxBackbone

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def precision(self) -> str:
        return self.meta.precision

    def infer(
        self,
        batch: Batch,
        heads: Sequence[str],
        dim: int | None = None,
        cls_positions: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The heads of one batch: from the graph's outputs, or (MCLS, pool masks) the torch heads on
        the graph's hidden states."""
        if cls_positions is not None or batch.pool_mask is not None:
            return super().infer(batch, heads, dim, cls_positions)
        fields = [f for f in self.meta.outputs if f != "last_hidden_state" and _field_head(f) in heads]
        values = self.onnx_backbone.run(fields, batch.input_ids, batch.attention_mask)
        out = {f: torch.from_numpy(np.asarray(v)) for f, v in zip(fields, values)}
        out = {f: (v.float() if v.is_floating_point() else v) for f, v in out.items()}
        if "dense" in out and dim is not None:
            out["dense"] = truncate_dense(out["dense"], self.check_dim(dim), self.config.normalize)
        return out

    def to(self, *args: Any, **kwargs: Any) -> OnnxEncoder:  # type: ignore[override]  # CPU graph
        device = torch.device(args[0]) if args and isinstance(args[0], (str, torch.device)) else None
        if device is not None and device.type != "cpu":
            raise ConfigError(
                f"this ONNX export runs on the CPU (device {device} asked); use the torch checkpoint on {device}"
            )
        return self

    def save_pretrained(self, path: str, format: str = "embforge") -> None:
        raise ConfigError(
            "an ONNX export is not a trainable checkpoint; save or export the torch model it came from"
        )


def _field_head(field: str) -> str:
    """The head that writes graph output ``field`` (``multivector_mask`` -> ``multivector``)."""
    return field[: -len("_mask")] if field.endswith("_mask") else field


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Session options: all graph optimisations; ``threads`` intra-op threads (None: torch's count)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    return opts


def _tokenizer(root: Path) -> Any:
    """The tokenizer the export saved, of the class its ``tokenizer_config.json`` names.

    ``AutoTokenizer`` on an exported folder prefers the class of the backbone's ``model_type``
    (``config.json`` is the backbone's, for sentence-transformers and fastembed): a Qwen2 decoder
    trained with another tokenizer would get ``Qwen2Tokenizer`` and other token ids."""
    import transformers

    file = root / "tokenizer_config.json"
    name = json.loads(file.read_text(encoding="utf-8")).get("tokenizer_class") if file.is_file() else None
    cls = getattr(transformers, name, None) if isinstance(name, str) else None
    if cls is not None and hasattr(cls, "from_pretrained"):
        return cls.from_pretrained(str(root))
    return transformers.AutoTokenizer.from_pretrained(str(root))


def load_onnx_encoder(
    path: str | os.PathLike, heads: Sequence[str] | None = None, threads: int | None = None
) -> OnnxEncoder:
    """Load an exported folder; ``heads`` limits the heads used (those the graph has)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    root = Path(path)
    meta = read_onnx_meta(root)
    graph = root / GRAPH_FILE
    if not graph.is_file():
        raise CheckpointError(f"{graph} is missing; the export is incomplete: re-run `embforge export`")
    cfg = meta.encoder
    have = list(cfg.heads)
    if heads is not None:
        missing = [h for h in heads if h not in have]
        if missing:
            raise ConfigError(
                f"{root}: the exported graph has no {', '.join(missing)} head (it has: {', '.join(have)}); "
                "re-export a checkpoint that has it"
            )
        cfg.heads = [h for h in have if h in heads or h == "dense"]
    session = ort.InferenceSession(str(graph), session_options(threads), providers=["CPUExecutionProvider"])
    backbone = OnnxBackbone(session, AutoConfig.from_pretrained(str(root)))
    enc = OnnxEncoder(backbone, _tokenizer(root), cfg, meta)
    state = load_file(str(root / HEADS_FILE)) if (root / HEADS_FILE).is_file() else {}
    for name in enc.heads:
        pre = f"{name}."
        sub = {k[len(pre) :]: v for k, v in state.items() if k.startswith(pre)}
        enc.head(name).load_state_dict(sub, strict=True)
    units = cpu_units()
    logger.info(
        "loaded ONNX export %s (%s, heads %s; int8 units: %s; %s)",
        root,
        meta.precision,
        ", ".join(enc.heads),
        units.int8_units,
        units.describe(),
    )
    return enc.eval()
