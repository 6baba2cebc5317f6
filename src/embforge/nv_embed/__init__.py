"""NV-Embed as a plugin: decoder LLM backbones, latent-attention pooling, LoRA (model side).

NV-Embed (Lee et al., 2024, "NV-Embed: Improved Techniques for Training LLMs as Generalist
Embedding Models") turns a decoder LLM into an embedder: the causal mask is removed,
hidden states are pooled by a latent-attention layer, queries carry an instruction.

Modules (import them directly; this package imports nothing, so ``embforge.nv_embed.lora``
stays torch-free for recipe configs):

- :mod:`embforge.nv_embed.model`: ``build_nv_embed``, ``save_nv_embed``, ``load_adapter_backbone``,
  ``adapt_decoder_backbone``, ``prepare_decoder_tokenizer``;
- :mod:`embforge.nv_embed.decoder`: ``set_bidirectional``, ``load_decoder``, ``is_decoder_config``;
- :mod:`embforge.nv_embed.latent_attention`: ``LatentAttentionPooling``, ``LastTokenPooling``;
- :mod:`embforge.nv_embed.lora`: ``LoraSettings``, ``apply_lora``, ``merge_lora``, adapters I/O.

The core (``embforge.model``) does not import this package. It names the pieces it may
need in its registries as lazy ``"module:attr"`` entries, imported when first used:

- ``embforge.model.pooling.POOLINGS``: ``"latent_attention"``, ``"last_token"``
  -> :mod:`embforge.nv_embed.latent_attention`;
- ``embforge.model.plugins.BACKBONE_ADAPTERS``: decoder ``model_type`` s (llama, mistral,
  qwen2, ...) -> :func:`embforge.nv_embed.model.adapt_decoder_backbone`;
- ``embforge.model.plugins.BACKBONE_LOADERS``: ``"lora_adapter"`` checkpoints
  -> :func:`embforge.nv_embed.model.load_adapter_backbone`.
"""

__all__ = ["decoder", "latent_attention", "lora", "model"]
