"""embforge == FlagEmbedding 1.4.2 ``BGEM3FlagModel``, against outputs recorded by the reference library.

FlagEmbedding 1.4.2 cannot be imported beside transformers 5 (embforge's environment), so its outputs
on the committed tiny BGE-M3 checkpoint are recorded in a pinned reference environment by
``scripts/record_reference.py`` (``make reference``) and committed. This test runs on every
``make test`` and never skips: a missing reference file is a failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embforge.model.encoder import Encoder
from embforge.scoring import (
    dense_scores,
    hybrid_scores,
    multivector_list_scores,
    sparse_vector_scores,
)

pytestmark = pytest.mark.parity

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def ref() -> dict:
    path = REF / "flagembedding-bge-m3.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: regenerate it with `make reference` and commit it")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def enc() -> Encoder:
    return Encoder.from_pretrained(str(REF / "tiny-m3"))


def _ours(enc: Encoder, texts: list[str], role: str):
    return enc.encode(texts, role=role, heads=("dense", "sparse", "multivector"), batch_size=3)


def test_every_head_matches_recorded_flagembedding(ref, enc):
    want = ref["all_texts"]
    ours = _ours(enc, ref["docs"] + ref["queries"], "document")
    np.testing.assert_allclose(ours.dense, np.array(want["dense"]), atol=1e-5)
    for i, lw in enumerate(want["lexical_weights"]):
        w = {int(k): v for k, v in lw.items()}
        got = ours.sparse.row(i)
        assert got.keys() == w.keys(), i
        np.testing.assert_allclose([got[k] for k in w], list(w.values()), atol=1e-5)
        np.testing.assert_allclose(ours.multivector[i], np.array(want["colbert_vecs"][i]), atol=1e-5)


def test_every_score_matches_recorded_flagembedding(ref, enc):
    q, d = _ours(enc, ref["queries"], "query"), _ours(enc, ref["docs"], "document")
    lex = sparse_vector_scores(q.sparse, d.sparse)
    col = multivector_list_scores(q.multivector, d.multivector)
    np.testing.assert_allclose(lex, np.array(ref["lexical_scores"]), atol=1e-5)
    np.testing.assert_allclose(col, np.array(ref["colbert_scores"]), atol=1e-5)
    dense = dense_scores(torch.from_numpy(q.dense), torch.from_numpy(d.dense)).numpy()
    w = tuple(ref["weights_for_different_modes"])
    pairs = iter(ref["compute_score"])
    for i in range(len(ref["queries"])):
        for j in range(len(ref["docs"])):
            r = next(pairs)
            hyb = hybrid_scores(dense[i, j], lex[i, j], col[i, j], weights=w, normalize=True)
            assert r["colbert+sparse+dense"] == pytest.approx(float(hyb), abs=1e-5)
            assert r["sparse"] == pytest.approx(float(lex[i, j]), abs=1e-5)
            assert r["colbert"] == pytest.approx(float(col[i, j]), abs=1e-5)
            assert r["dense"] == pytest.approx(float(dense[i, j]), abs=1e-5)
