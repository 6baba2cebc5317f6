"""NV-Embed encoders: a decoder LLM + latent-attention pooling + instructions (+ LoRA).

NV-Embed (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as Generalist
Embedding Models"). Assembles its pieces into an ordinary
:class:`~embforge.model.encoder.Encoder`, so ``encode``, indexes, evaluation and
the server work unchanged:

- backbone: a Llama / Mistral / Qwen2-style decoder, made bidirectional
  (:mod:`embforge.nv_embed.decoder`), optionally wrapped with LoRA (:mod:`embforge.nv_embed.lora`);
- dense head: ``"latent_attention"`` pooling (or ``"mean"`` / ``"last_token"`` for
  comparison, :mod:`embforge.nv_embed.latent_attention`), L2-normalised;
- instructions: the query prefix ``"Instruct: {task}\\nQuery: "`` is stored in the
  encoder config (``query_prefix``) with ``pool_prefix=False``, so instruction tokens
  are attended to but not pooled; documents get no prefix.

Saving: ``save_nv_embed(enc, dir, lora="merged")`` folds the adapters into the
weights and writes a self-contained embforge checkpoint; ``lora="adapter"`` writes
only the adapters (``dir/adapter``) and the heads, and records the base model's
path/hub id in the config (``base_model``) to rebuild the backbone from on load.

Example:
    >>> enc = build_nv_embed("path/to/mistral", task="Given a question, retrieve passages that answer it",
    ...                      lora=LoraSettings(r=16))                      # doctest: +SKIP
    >>> enc.encode(["how do planes fly?"], role="query").dense.shape    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embforge.atomic import atomic_write_text
from embforge.errors import CheckpointError, ConfigError
from embforge.model.config import FORMAT_VERSION, EncoderConfig
from embforge.model.encoder import Encoder
from embforge.model.instructions import instruction_prefix
from embforge.nv_embed.decoder import is_decoder_config, load_decoder, set_bidirectional
from embforge.nv_embed.lora import LoraSettings, apply_lora, is_lora, load_adapter, merge_lora, save_adapter
from embforge.text.tokenize import SpecialLayout

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DEFAULT_TASK",
    "NV_POOLINGS",
    "adapt_decoder_backbone",
    "build_nv_embed",
    "prepare_decoder_tokenizer",
    "save_nv_embed",
    "load_adapter_backbone",
]

logger = logging.getLogger("embforge")

DEFAULT_TASK = "Given a question, retrieve passages that answer the question"
NV_POOLINGS = ("latent_attention", "mean", "last_token")
ADAPTER_DIR = "adapter"


def prepare_decoder_tokenizer(tokenizer):
    """Make a decoder tokenizer fit for embedding, in place; returns it.

    - pads on the right (decoders number positions 0..T-1 regardless of padding, so
      left padding would shift the positions of short texts);
    - has a pad token (the EOS / UNK token when the tokenizer has none);
    - ends every text with EOS (Llama/Mistral tokenizers add only BOS), which the
      last-token pooling reads. Done by rewriting the fast tokenizer's post-processor,
      so the change is saved with the tokenizer.
    """
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    eos = tokenizer.eos_token_id
    if eos is None:
        return tokenizer
    probe = tokenizer("hello world", add_special_tokens=True)["input_ids"]
    if probe and probe[-1] == eos:
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError(
            f"{type(tokenizer).__name__} is a slow tokenizer that does not append EOS; "
            "load the fast tokenizer (tokenizer.json) for NV-Embed"
        )
    lead_ids = probe[: SpecialLayout.of(tokenizer).prefix]  # keep the leading specials (BOS / [CLS])
    bos = tokenizer.bos_token_id
    if hasattr(tokenizer, "add_eos_token") and bos is not None and lead_ids in ([], [bos]):
        tokenizer.add_eos_token = True  # Llama/Mistral-style tokenizers rebuild their own template
        probe = tokenizer("hello world", add_special_tokens=True)["input_ids"]
        if probe[-1] == eos and probe[: len(lead_ids)] == lead_ids:
            return tokenizer
    from tokenizers import processors

    lead = [(tokenizer.convert_ids_to_tokens(i), i) for i in lead_ids]
    pre = "".join(f"{t} " for t, _ in lead)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{pre}$A {tokenizer.eos_token}",
        pair=f"{pre}$A {tokenizer.eos_token} $B:1 {tokenizer.eos_token}:1",
        special_tokens=list(dict(lead + [(tokenizer.eos_token, eos)]).items()),
    )
    probe = tokenizer("hello world", add_special_tokens=True)["input_ids"]
    if probe[-1] != eos:
        raise ConfigError(
            f"could not make {type(tokenizer).__name__} append its EOS token {tokenizer.eos_token!r}"
        )
    return tokenizer


def adapt_decoder_backbone(backbone: nn.Module, tokenizer: Any, config: EncoderConfig) -> None:
    """The backbone adapter of decoder LLM families (``embforge.model.plugins.BACKBONE_ADAPTERS``):
    right padding and EOS on the tokenizer, causal mask on or off per ``config.bidirectional``
    (not on an exported graph, ``traced_graph``: it keeps the mask it was traced with)."""
    prepare_decoder_tokenizer(tokenizer)
    if not getattr(backbone, "traced_graph", False):
        set_bidirectional(backbone, config.bidirectional)


def _check_pooling(pooling: str) -> None:
    if pooling not in NV_POOLINGS:
        raise ConfigError(f"unknown NV-Embed pooling {pooling!r}; choose from: {', '.join(NV_POOLINGS)}")


def build_nv_embed(
    backbone: str | nn.Module,
    tokenizer=None,
    *,
    pooling: str = "latent_attention",
    num_latents: int = 512,
    num_heads: int = 8,
    mlp_ratio: int = 4,
    task: str | None = DEFAULT_TASK,
    bidirectional: bool = True,
    lora: LoraSettings | None = None,
    max_length: int | None = None,
    seed: int = 0,
) -> Encoder:
    """An NV-Embed encoder on a decoder backbone.

    Args:
        backbone: path / hub id of a decoder LLM, or an already built HF decoder model.
        tokenizer: its tokenizer (loaded from ``backbone`` when that is a path).
        pooling: "latent_attention" (NV-Embed), "mean" or "last_token" (EOS).
        num_latents, num_heads, mlp_ratio: latent-attention sizes (paper: 512, 8).
        task: the query instruction's task description (None = no instruction).
        bidirectional: remove the causal mask (NV-Embed); False keeps the decoder causal.
        lora: LoRA settings, or None to train all backbone weights.
        max_length: default token limit per text.
        seed: seed of the fresh latent-attention weights.
    """
    _check_pooling(pooling)
    base_model = None
    if isinstance(backbone, (str, Path)):
        from transformers import AutoTokenizer

        base_model = str(backbone)
        model = load_decoder(base_model, bidirectional=bidirectional)
        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(base_model)
    else:
        model = backbone
        base_model = getattr(model, "name_or_path", "") or None
    if tokenizer is None:
        raise ConfigError("build_nv_embed: pass the tokenizer when the backbone is a model object")
    if not is_decoder_config(model.config):
        logger.warning(
            "NV-Embed backbone has model_type %r, not a known decoder (%s); trying anyway",
            getattr(model.config, "model_type", None),
            "llama, mistral, qwen2, ...",
        )
    set_bidirectional(model, bidirectional)
    prepare_decoder_tokenizer(tokenizer)
    options = {"num_latents": num_latents, "num_heads": num_heads, "mlp_ratio": mlp_ratio, "seed": seed}
    cfg = EncoderConfig(
        heads=["dense"],
        pooling=pooling,
        pooling_options=options if pooling == "latent_attention" else {},
        normalize=True,
        max_length=max_length,
        query_prefix=instruction_prefix(task),
        document_prefix="",
        pool_prefix=False,
        bidirectional=bidirectional,
        base_model=base_model,
    )
    if lora is not None:
        model = apply_lora(model, lora)
    return Encoder(model, tokenizer, cfg)


def save_nv_embed(enc: Encoder, path: str | Path, lora: str = "merged") -> None:
    """Save an NV-Embed encoder.

    Args:
        enc: the encoder (LoRA-wrapped or not).
        path: output directory.
        lora: "merged" (fold adapters into the weights; a standalone checkpoint; the
            in-memory encoder is merged too) or "adapter" (only adapters + heads; needs
            ``enc.config.base_model`` to point at the base weights on load).
    """
    if lora not in ("merged", "adapter"):
        raise ConfigError(f"unknown lora save mode {lora!r}; choose from: adapter, merged")
    if lora == "merged" or not is_lora(enc.backbone):
        if is_lora(enc.backbone):
            enc.backbone = merge_lora(enc.backbone)
        enc.save_pretrained(str(path), format="embforge")
        return
    if not enc.config.base_model:
        raise CheckpointError(
            f"cannot save LoRA adapters to {path}: the base model's path is unknown (the backbone was built "
            "in memory); save with lora='merged', or build the encoder from a saved base model path"
        )
    _save_adapter_layout(enc, Path(path))


def _save_adapter_layout(enc: Encoder, out: Path) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    enc.tokenizer.save_pretrained(str(out))
    save_adapter(enc.backbone, out / ADAPTER_DIR)
    lora_backbone: Any = enc.backbone  # a peft.PeftModel: save_adapter accepted it
    heads = {
        k: v.detach().cpu().contiguous() for k, v in enc.state_dict().items() if not k.startswith("backbone.")
    }
    save_file(heads, str(out / "model.safetensors"), metadata={"format": "pt", "contents": "heads"})
    meta = {
        "format": "embforge",
        "format_version": FORMAT_VERSION,
        "encoder": enc.config.to_dict(),
        "backbone": lora_backbone.get_base_model().config.to_dict(),
        "lora_adapter": ADAPTER_DIR,
    }
    atomic_write_text(out / "config.json", json.dumps(meta, indent=2, sort_keys=True))


def load_adapter_backbone(path: Path, meta: dict, cfg) -> nn.Module:
    """Rebuild the backbone of an adapter-layout checkpoint: base weights + saved LoRA adapters."""
    adapter = path / meta["lora_adapter"]
    if not cfg.base_model:
        raise CheckpointError(
            f"{path / 'config.json'}: LoRA adapter checkpoint without encoder.base_model; "
            "set it to the base model's path or hub id"
        )
    try:
        base = load_decoder(cfg.base_model, bidirectional=cfg.bidirectional)
    except OSError as e:
        raise CheckpointError(
            f"{path}: cannot load the base model {cfg.base_model!r} the LoRA adapters belong to "
            f"({str(e).splitlines()[0][:200]}); fix encoder.base_model in {path / 'config.json'}"
        ) from None
    return load_adapter(base, adapter)
