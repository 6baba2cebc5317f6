"""MLM pretraining wrapper, and saving the encoder alone after RetroMAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from embforge.losses.mlm import mlm_loss
from embforge.model.builders import XLMR_SIZES, build_masked_lm, xlmr_config
from embforge.model.encoder import Encoder
from embforge.pretrain.collate import MLMCollator
from embforge.pretrain.mlm import MaskedLM
from embforge.pretrain.retromae import RetroMAE


def test_mlm_loss_only_counts_labelled_positions():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 100.0  # a confident right answer at a labelled position
    logits[0, 1, 0] = 100.0  # a confident wrong answer at an ignored position
    out = mlm_loss(logits, torch.tensor([[2, -100, 1]]))
    assert abs(float(out.total) - float(torch.log(torch.tensor(4.0))) / 2) < 1e-5
    assert float(mlm_loss(logits, torch.full((1, 3), -100)).total) == 0.0


def test_masked_lm_matches_hf_loss_and_learns(ko_texts, ko_tokenizer):
    lm = build_masked_lm("xlmr-tiny", ko_tokenizer, max_length=48, seed=0)
    model = MaskedLM(lm).eval()
    batch = MLMCollator(ko_tokenizer, 48, 0.15, seed=0)(ko_texts[:8])
    ours = model(batch).total
    ref = lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
    assert torch.allclose(ours, ref, atol=1e-5)
    held = MLMCollator(ko_tokenizer, 48, 0.15, seed=7)(ko_texts[-64:])  # fixed masks

    def held_loss():
        model.eval()
        with torch.no_grad():
            loss = float(model(held).total)
        model.train()
        return loss

    before = held_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    collate = MLMCollator(ko_tokenizer, 48, 0.15, seed=1)
    for step in range(40):
        model(collate(ko_texts[step * 32 : (step + 1) * 32])).total.backward()
        opt.step()
        opt.zero_grad()
    assert held_loss() < before - 0.5


@pytest.mark.parametrize("fmt", ["embforge", "bge-m3"])
def test_save_encoder_alone_loads_as_embforge_encoder_with_mcls(tmp_path, ko_texts, ko_tokenizer, fmt):
    model = RetroMAE(build_masked_lm("xlmr-tiny", ko_tokenizer, max_length=48, seed=0)).eval()
    out_dir = model.save_encoder(tmp_path / "enc", ko_tokenizer, format=fmt)
    enc = Encoder.from_pretrained(str(out_dir))
    assert enc.config.pooling == "cls" and enc.heads == ("dense",)
    names = [n for n, _ in enc.named_parameters()]
    assert not any("lm_head" in n or "decoder" in n for n in names)
    b = ko_tokenizer(ko_texts[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = F.normalize(model.encode(b.input_ids, b.attention_mask)[:, 0], dim=-1)
    got = enc.encode(ko_texts[:4], heads=("dense",)).dense
    assert np.allclose(got, want.numpy(), atol=1e-5)
    enc.config.mcls_stride = 16  # a [CLS] every 16 tokens within the 46-token limit
    long_text = " ".join(ko_texts[:12])
    mcls = enc.encode([long_text], heads=("dense",), long_inputs="mcls", max_length=46).dense
    plain = enc.encode([long_text], heads=("dense",), max_length=46).dense
    assert mcls.shape == (1, 64) and np.isfinite(mcls).all() and not np.allclose(mcls, plain)
    if fmt == "bge-m3":  # plain transformers directory: AutoModel gives the same first-token state
        backbone = AutoModel.from_pretrained(out_dir).eval()
        with torch.no_grad():
            h = backbone(**b).last_hidden_state[:, 0]
        assert torch.allclose(F.normalize(h, dim=-1), want, atol=1e-5)


def test_named_sizes():
    cfg = xlmr_config("xlmr-large", vocab_size=250002)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (1024, 24, 16)
    assert cfg.max_position_embeddings == 514  # XLM-R: 512 tokens + padding_idx offset 2
    assert list(XLMR_SIZES)[0] == "xlmr-tiny"
