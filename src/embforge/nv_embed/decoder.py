"""Decoder-only LLMs (Llama, Mistral, Qwen2 style) as bidirectional encoders (NV-Embed).

NV-Embed (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as
Generalist Embedding Models") removes the causal mask of a decoder LLM during
contrastive training so that every token attends to every token. In
transformers 5.x the causal structure lives in three places; all three are
switched off:

1. The mask builder. Each decoder model calls
   ``masking_utils.create_causal_mask`` (or ``create_sliding_window_causal_mask``)
   with its config; when ``config.is_causal`` is False those return the
   *bidirectional* (padding-only) mask instead, for every attention
   implementation (eager: additive float mask; SDPA: boolean mask).
2. The ``is_causal`` kwarg. The ``merge_with_config_defaults`` decorator on the
   model's ``forward`` passes ``config.is_causal`` down to every attention call;
   SDPA and flash attention use it when the mask builder returned ``None``
   (no padding) -- a causal kernel would otherwise be chosen.
3. The ``is_causal`` attribute of each attention module: the fallback used by
   the SDPA/flash integrations when no kwarg arrives (older transformers, or an
   attention module called directly).

``set_bidirectional`` sets the config flag and the module flags **per instance**:
the model gets its own copy of its config (so another model built from the same
config object stays causal) and the flag is set on this model's attention
modules only; no class or global function is patched. A bidirectional model
saved with ``save_pretrained`` stores ``"is_causal": false`` in its config.json;
``load_decoder`` re-applies the module flags after loading.

Example:
    >>> from transformers import LlamaConfig, LlamaModel
    >>> m = LlamaModel(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
    ...                            num_attention_heads=2, num_key_value_heads=1, vocab_size=100))
    >>> is_bidirectional(set_bidirectional(m))
    True
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from embforge.errors import ConfigError
from embforge.model.plugins import DECODER_MODEL_TYPES

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DECODER_MODEL_TYPES",
    "attention_modules",
    "is_bidirectional",
    "is_decoder_config",
    "load_decoder",
    "set_bidirectional",
]


def is_decoder_config(config) -> bool:
    """True for a decoder-only LLM config (a model_type NV-Embed knows how to make bidirectional)."""
    return getattr(config, "model_type", None) in DECODER_MODEL_TYPES


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a decoder: modules that carry an ``is_causal`` flag."""
    return [m for m in model.modules() if hasattr(m, "is_causal") and hasattr(m, "q_proj")]


def set_bidirectional(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Make a decoder-only HF model attend bidirectionally (or causally again), in place.

    Args:
        model: a HF decoder (e.g. ``LlamaModel``, ``MistralModel``, ``Qwen2Model``, their
            ``*ForCausalLM``, or a peft wrapper around one).
        enabled: True = bidirectional, False = back to causal.

    Returns:
        The same model (for chaining).

    Raises:
        ConfigError: the model has no attention modules with an ``is_causal`` flag
            (not a decoder this function knows).
    """
    attn = attention_modules(model)
    if not attn:
        raise ConfigError(
            f"cannot make {type(model).__name__} bidirectional: it has no attention modules with an "
            "'is_causal' flag (expected a Llama/Mistral/Qwen2-style decoder); "
            "use an encoder model (BERT, XLM-R) directly instead"
        )
    old: Any = getattr(model, "config", None) or attn[0].config  # a transformers PretrainedConfig
    new = copy.deepcopy(old)
    new.is_causal = not enabled
    # rebind every module that shared the old config object to this model's own copy
    for m in model.modules():
        if getattr(m, "config", None) is old:
            m.config = new
    for m in attn:
        # HF attention modules keep a plain bool here; nn.Module types attribute writes as Tensor | Module
        m.is_causal = not enabled  # type: ignore[assignment]  # see above
    return model


def is_bidirectional(model: nn.Module) -> bool:
    """True if every attention module and the mask builder of ``model`` are non-causal."""
    attn = attention_modules(model)
    if not attn:
        return False
    return all(not m.is_causal and not getattr(m.config, "is_causal", True) for m in attn)


def load_decoder(
    name_or_path: str,
    *,
    bidirectional: bool = True,
    attn_implementation: str | None = None,
    dtype=None,
) -> nn.Module:
    """Load the base (no LM head) model of a decoder LLM and make it bidirectional.

    Args:
        name_or_path: local directory or hub id (no remote code is ever run).
        bidirectional: remove the causal mask (NV-Embed); False keeps it causal.
        attn_implementation: "sdpa" (default in transformers) or "eager".
        dtype: torch dtype of the weights (default: as saved / float32).
    """
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModel.from_pretrained(name_or_path, **kwargs)
    return set_bidirectional(model, bidirectional)
