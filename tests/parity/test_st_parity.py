"""embforge == sentence-transformers on all-MiniLM-L6-v2, and the ST export round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.requires import require_module

pytestmark = pytest.mark.parity

TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome, I loved every minute of it and will watch it again tomorrow!",
    "Ein Mann spielt Gitarre.",
    "short",
    " ".join(["very long input"] * 200),  # > 256 tokens: truncated the same way by both
]


@pytest.fixture(scope="module")
def st_model():
    st = require_module("sentence_transformers", "pip install -e '.[dev]'")
    from embforge.model.checkpoint import default_model_path

    return st.SentenceTransformer(default_model_path(), device="cpu")


def test_minilm_dense_equals_sentence_transformers(minilm, st_model):
    ref = st_model.encode(TEXTS, batch_size=2, normalize_embeddings=False)
    ours = minilm.encode(TEXTS, heads=("dense",), batch_size=3)
    np.testing.assert_allclose(ours.dense, ref, atol=1e-5)


def test_sentence_transformers_export_round_trips(minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    from embforge.model.encoder import Encoder

    out = tmp_path / "st"
    minilm.save_pretrained(str(out), format="sentence-transformers")
    st = SentenceTransformer(str(out), device="cpu")
    ours = minilm.encode(TEXTS, heads=("dense",)).dense
    np.testing.assert_allclose(st.encode(TEXTS), ours, atol=1e-5)
    again = Encoder.from_pretrained(str(out), heads=("dense",))
    assert again.config.pooling == "mean" and again.max_length == minilm.max_length
    np.testing.assert_allclose(again.encode(TEXTS).dense, ours, atol=1e-6)
