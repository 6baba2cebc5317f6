"""Lazy plugin entries: registries of the core name ``"module:attr"`` strings of plugin code.

The core (``embforge.model``) must load an NV-Embed checkpoint without importing the
NV-Embed package (``embforge.nv_embed``) up front. Its registries therefore hold a
string such as ``"embforge.nv_embed.decoder:prepare_decoder_backbone"`` that is imported
the first time the entry is used.

- ``BACKBONE_ADAPTERS``: HF ``model_type`` -> ``adapt(backbone, tokenizer, config)``, run by
  ``Encoder.__init__`` on a backbone of that family (decoder LLMs are made
  bidirectional, their tokenizers pad right and append EOS).
- ``BACKBONE_LOADERS``: a key of an embforge ``config.json`` -> ``load(path, meta, config)``
  that builds the backbone instead of the stored weights (``"lora_adapter"``: base
  model + LoRA adapters).
"""

from __future__ import annotations

import importlib
from typing import Any

from embforge.registry import Registry

__all__ = ["BACKBONE_ADAPTERS", "BACKBONE_LOADERS", "DECODER_MODEL_TYPES", "import_attr"]


def import_attr(entry: Any) -> Any:
    """``"package.module:attr"`` -> that attribute (imported now); anything else is returned as is."""
    if not isinstance(entry, str):
        return entry
    module, _, attr = entry.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


BACKBONE_ADAPTERS: Registry = Registry("backbone adapter")
BACKBONE_LOADERS: Registry = Registry("backbone loader")

# Decoder LLM families NV-Embed knows how to make bidirectional (tiny random configs of each
# are tested); other families that build their masks through transformers' masking_utils
# work the same way once added here.
DECODER_MODEL_TYPES: tuple[str, ...] = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3")
for _model_type in DECODER_MODEL_TYPES:
    BACKBONE_ADAPTERS.add(_model_type, "embforge.nv_embed.model:adapt_decoder_backbone")
BACKBONE_LOADERS.add("lora_adapter", "embforge.nv_embed.model:load_adapter_backbone")
