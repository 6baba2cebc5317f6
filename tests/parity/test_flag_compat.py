"""FlagEmbedding users' code runs on an embforge ``Encoder`` (issue 18).

The calls below are FlagEmbedding 1.4.2's documented ``BGEM3FlagModel`` call shapes, exactly as
``scripts/record_reference.py`` made them on the reference library; their results must equal the
recorded ones (tests/parity/reference/flagembedding-bge-m3.json) within 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embforge.errors import ConfigError
from embforge.model.encoder import Encoder

pytestmark = pytest.mark.parity

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((REF / "flagembedding-bge-m3.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model() -> Encoder:
    return Encoder.from_pretrained(str(REF / "tiny-m3"))


def test_encode_with_flagembedding_flags_and_keys_matches_the_recording(ref, model):
    texts = ref["docs"] + ref["queries"]
    out = model.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True, batch_size=2)
    want = ref["all_texts"]
    np.testing.assert_allclose(out["dense_vecs"], np.array(want["dense"]), atol=1e-5)
    for got, lw in zip(out["lexical_weights"], want["lexical_weights"]):
        assert got.keys() == lw.keys()  # token ids as strings, FlagEmbedding's form
        np.testing.assert_allclose([got[k] for k in lw], list(lw.values()), atol=1e-5)
    for got, cv in zip(out["colbert_vecs"], want["colbert_vecs"]):
        np.testing.assert_allclose(got, np.array(cv), atol=1e-5)
    assert out.keys() == ["dense_vecs", "lexical_weights", "colbert_vecs"]


def test_flagembedding_score_helpers_match_the_recording(ref, model):
    raw_q, raw_d = (
        model.encode(t, return_dense=True, return_sparse=True, return_colbert_vecs=True, batch_size=2)
        for t in (ref["queries"], ref["docs"])
    )
    lexical = model.compute_lexical_matching_score(raw_q["lexical_weights"], raw_d["lexical_weights"])
    np.testing.assert_allclose(lexical, np.array(ref["lexical_scores"]), atol=1e-5)
    one = model.compute_lexical_matching_score(raw_q["lexical_weights"][0], raw_d["lexical_weights"][0])
    assert one == pytest.approx(ref["lexical_scores"][0][0], abs=1e-5)
    colbert = [[model.colbert_score(a, b) for b in raw_d["colbert_vecs"]] for a in raw_q["colbert_vecs"]]
    np.testing.assert_allclose(colbert, np.array(ref["colbert_scores"]), atol=1e-5)
    tokens = model.convert_id_to_token(raw_q["lexical_weights"])
    assert len(tokens) == len(ref["queries"]) and all(isinstance(t, str) for t in tokens[1])
    assert sorted(tokens[1].values()) == pytest.approx(sorted(raw_q["lexical_weights"][1].values()))


def test_flagembedding_defaults_and_plain_call(model):
    """FlagEmbedding's README: ``model.encode(sentences, batch_size=12, max_length=8192)['dense_vecs']``;
    return_dense defaults to True, the other two to False (their keys then hold None)."""
    out = model.encode(["What is BGE M3?", "Defination of BM25"], batch_size=12, max_length=512)
    assert out["dense_vecs"].shape[0] == 2
    out = model.encode(["What is BGE M3?"], return_sparse=True)
    assert (
        out["dense_vecs"] is not None and out["lexical_weights"] is not None and out["colbert_vecs"] is None
    )
    assert "colbert_vecs" not in out and "lexical_weights" in out
    only = model.encode(["x"], return_dense=False, return_colbert_vecs=True)
    assert only["dense_vecs"] is None and len(only["colbert_vecs"]) == 1
    assert model.encode(["x"], convert_to_numpy=True)["dense_vecs"].dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"return_sparse": True, "heads": ("dense",)}, "give either heads= or FlagEmbedding's return_sparse"),
        ({"return_dense": False}, "nothing to return"),
        ({"convert_to_numpy": False}, "returns numpy"),
    ],
)
def test_ambiguous_flagembedding_options_are_clear_errors(model, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        model.encode(["x"], **kwargs)


def test_unknown_key_names_the_flagembedding_keys(model):
    with pytest.raises(KeyError, match="dense_vecs, lexical_weights, colbert_vecs"):
        model.encode(["x"])["dense"]
