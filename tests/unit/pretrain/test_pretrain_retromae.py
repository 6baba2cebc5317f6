"""RetroMAE: the decoder learns to rebuild texts from h; loss goes down on real Korean text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embforge.model.builders import build_masked_lm
from embforge.pretrain.collate import RetroMAECollator
from embforge.pretrain.corpus import read_texts
from embforge.pretrain.retromae import RetroMAE
from embforge.pretrain.tokenizer import train_tokenizer
from helpers.paths import SHARED_DATA
from helpers.requires import missing

XQUAD_EN = str(SHARED_DATA / "xquad/xquad.en.json")
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a journey of a thousand miles begins with one step",
    "all that glitters is not gold",
    "to be or not to be that is the question",
]


@pytest.fixture(scope="module")
def en_tokenizer():
    if not Path(XQUAD_EN).exists():
        missing(f"{XQUAD_EN} (shared data) is not on this machine")
    return train_tokenizer(read_texts(XQUAD_EN, limit=50) + SENTENCES * 5, vocab_size=500)


def _tiny(tok, max_length=32, seed=0, **kw):
    return RetroMAE(build_masked_lm("xlmr-tiny", tok, max_length=max_length, seed=seed, **kw))


def test_loss_has_both_parts_and_sums_them(en_tokenizer):
    model = _tiny(en_tokenizer)
    batch = RetroMAECollator(en_tokenizer, 32, 0.3, 0.5, seed=0)(SENTENCES)
    out = model(batch)
    enc, dec = out.parts["retromae/encoder_mlm"], out.parts["retromae/decoder"]
    assert torch.allclose(out.total.detach(), enc + dec)
    # at init both are ~log(V) (uniform prediction over the vocabulary)
    assert abs(float(dec) - torch.log(torch.tensor(float(len(en_tokenizer))))) < 0.5
    out.total.backward()
    assert model.decoder.query.weight.grad is not None
    assert model.lm.lm_head.dense.weight.grad is not None


def test_decoder_reconstructs_memorised_sentences_from_h_alone(en_tokenizer):
    """After 120 steps the decoder rebuilds 4 sentences when every position sees ONLY h.

    With 4 different sentences, positions alone cannot tell them apart: the
    content has to flow through the encoder's sentence embedding h.
    """
    torch.manual_seed(0)
    model = _tiny(en_tokenizer, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    collate = RetroMAECollator(en_tokenizer, 32, 0.3, 0.6, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    enc = en_tokenizer(SENTENCES, padding=True, return_tensors="pt")
    targets = enc.attention_mask.bool() & (enc.input_ids > 4)

    def accuracy():
        model.eval()
        pred = model.reconstruct(enc.input_ids, enc.attention_mask)
        model.train()
        return float((pred[targets] == enc.input_ids[targets]).float().mean())

    before = accuracy()
    for _ in range(120):
        model(collate(SENTENCES)).total.backward()
        opt.step()
        opt.zero_grad()
    assert before < 0.2
    assert accuracy() >= 0.9


def test_retromae_loss_goes_down_on_korean_with_fresh_tokenizer(ko_texts, ko_tokenizer):
    """A tokenizer trained on KLUE sentences, a tiny XLM-R from scratch, 40 steps of RetroMAE."""
    texts, tok = ko_texts, ko_tokenizer
    train, held = texts[:6000], texts[-64:]
    model = _tiny(tok, max_length=48, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def held_loss():
        model.eval()
        with torch.no_grad():
            out = model(RetroMAECollator(tok, 48, 0.3, 0.5, seed=123)(held))  # same masks each time
        model.train()
        return {k: float(v) for k, v in out.parts.items()}

    before = held_loss()
    collate = RetroMAECollator(tok, 48, 0.3, 0.5, seed=0)
    for step in range(40):
        model(collate(train[step * 32 : (step + 1) * 32])).total.backward()
        opt.step()
        opt.zero_grad()
    after = held_loss()
    for part in before:
        assert after[part] < before[part] - 0.5, (part, before[part], after[part])
