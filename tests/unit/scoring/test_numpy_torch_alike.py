"""The scoring functions take numpy and torch alike (issue 18): same values from a forward pass's
torch outputs and from ``encode``'s numpy embeddings, for every built-in head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embforge import dense_scores
from embforge.model.heads import head_scores

TEXTS = ["what is a llama?", "Llamas are South American camelids.", "The stock market fell on Monday."]


@pytest.mark.parametrize("head", ["dense", "sparse", "multivector"])
def test_head_scores_torch_equals_numpy(tiny_m3, head):
    enc = tiny_m3
    enc.eval()
    q, d = enc.tokenize(TEXTS[:2], role="query"), enc.tokenize(TEXTS, role="document")
    with torch.no_grad():
        torch_scores = head_scores(enc(q, heads=(head,)), enc(d, heads=(head,)), head)
    assert isinstance(torch_scores, torch.Tensor) and torch_scores.shape == (2, 3)
    qe = enc.encode(TEXTS[:2], role="query", heads=(head,))
    de = enc.encode(TEXTS, role="document", heads=(head,))
    numpy_scores = head_scores(qe, de, head)
    assert isinstance(numpy_scores, np.ndarray)
    np.testing.assert_allclose(numpy_scores, torch_scores.numpy(), rtol=1e-4, atol=1e-5)


def test_dense_scores_keeps_the_array_type():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    out_np = dense_scores(q, d)
    out_t = dense_scores(torch.from_numpy(q), torch.from_numpy(d))
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_np, out_t.numpy(), rtol=1e-6)
