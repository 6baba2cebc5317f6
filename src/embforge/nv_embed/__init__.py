"""NV-Embed as a plugin: decoder LLM backbones, latent-attention pooling, LoRA (model side).

NV-Embed (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as Generalist
Embedding Models") turns a decoder LLM into an embedder: the causal mask is removed,
hidden states are pooled by a latent-attention layer, queries carry an instruction.

The core (``embforge.model``) does not import this package. It names the pieces it may
need in its registries as lazy ``"module:attr"`` entries, imported when first used:

- ``embforge.model.pooling.POOLINGS``: ``"latent_attention"``, ``"last_token"``
  -> :mod:`embforge.nv_embed.latent_attention`;
- ``embforge.model.plugins.BACKBONE_ADAPTERS``: decoder ``model_type`` s (llama, mistral,
  qwen2, ...) -> :func:`embforge.nv_embed.model.adapt_decoder_backbone`;
- ``embforge.model.plugins.BACKBONE_LOADERS``: ``"lora_adapter"`` checkpoints
  -> :func:`embforge.nv_embed.model.load_adapter_backbone`.
"""

from embforge.nv_embed.decoder import (
    DECODER_MODEL_TYPES,
    is_bidirectional,
    is_decoder_config,
    load_decoder,
    set_bidirectional,
)
from embforge.nv_embed.latent_attention import (
    LastTokenPooling,
    LatentAttentionPooling,
    last_token,
    masked_mean,
)
from embforge.nv_embed.lora import LoraSettings, apply_lora, is_lora, load_adapter, merge_lora, save_adapter
from embforge.nv_embed.model import (
    DEFAULT_TASK,
    NV_POOLINGS,
    adapt_decoder_backbone,
    build_nv_embed,
    load_adapter_backbone,
    prepare_decoder_tokenizer,
    save_nv_embed,
)

__all__ = [
    "DECODER_MODEL_TYPES",
    "DEFAULT_TASK",
    "NV_POOLINGS",
    "LastTokenPooling",
    "LatentAttentionPooling",
    "LoraSettings",
    "adapt_decoder_backbone",
    "apply_lora",
    "build_nv_embed",
    "is_bidirectional",
    "is_decoder_config",
    "is_lora",
    "last_token",
    "load_adapter",
    "load_adapter_backbone",
    "load_decoder",
    "masked_mean",
    "merge_lora",
    "prepare_decoder_tokenizer",
    "save_adapter",
    "save_nv_embed",
    "set_bidirectional",
]
