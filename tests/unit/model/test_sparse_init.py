"""Sparse-head initialisations: balanced / ones / idf (``embforge.model.heads.sparse``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import embforge
from embforge.model.encoder import Encoder
from embforge.model.heads.sparse import BALANCED_BIAS, fit_idf_weights, init_sparse_head

CORPUS = [f"the river {w} runs by the stone bridge" for w in ("north", "south", "green", "quick")] + [
    f"the market {w} opens in the city" for w in ("garden", "window", "music", "paper")
]


@pytest.fixture()
def enc(tiny_m3_path):
    return Encoder.from_pretrained(str(tiny_m3_path))


def _weights(enc, text):
    sv = enc.encode([text], heads=("sparse",)).sparse
    ids = enc.tokenizer(text)["input_ids"]
    return {int(i): float(v) for i, v in zip(sv.indices, sv.values)}, ids


def test_constant_inits(enc):
    assert init_sparse_head(enc, "ones") == "W_lex=0, b=1 (every non-special token weighs 1)"
    w, _ = _weights(enc, "the dog runs")
    assert np.allclose(list(w.values()), 1.0)
    init_sparse_head(enc, "balanced")
    w, _ = _weights(enc, "the dog runs")
    assert np.allclose(list(w.values()), BALANCED_BIAS)


def test_idf_init_weighs_rare_terms_above_common_ones(enc):
    did = embforge.init_sparse_head(enc, "idf", CORPUS * 3, fit_texts=8)
    assert did.startswith("idf fit on 8 texts")
    w, _ = _weights(enc, CORPUS[0])
    tok = enc.tokenizer
    special = set(tok.all_special_ids)
    # a token the head weighs 0 (ReLU) is absent from the sparse vector: count it as 0
    common = [i for i in tok("the")["input_ids"] if i not in special]
    rare = [i for i in tok(" north")["input_ids"] if i not in special and i not in common]
    assert common and rare
    assert np.mean([w.get(i, 0.0) for i in rare]) > np.mean([w.get(i, 0.0) for i in common])


def test_idf_fit_tracks_bm25_idf(enc):
    weight, bias, corr, n_tokens, n_texts = fit_idf_weights(enc, CORPUS, fit_texts=8, scale=1.0, ridge=1e-3)
    assert n_texts == 8 and n_tokens > 50 and math.isfinite(bias)
    assert corr > 0.8  # hidden states of 32 dims fit 8 short texts' IDF closely
    assert weight.shape == (enc.hidden_size,)


def test_bad_inits_say_what_to_do(enc):
    with pytest.raises(ValueError, match="choose from: balanced, ones, idf"):
        init_sparse_head(enc, "bm25")
    with pytest.raises(ValueError, match="'idf' needs texts"):
        init_sparse_head(enc, "idf")


def test_no_sparse_head(tiny_m3_path):
    dense = Encoder.from_pretrained(str(tiny_m3_path), heads=("dense",))
    with pytest.raises(ValueError, match="has no sparse head"):
        init_sparse_head(dense, "balanced")
