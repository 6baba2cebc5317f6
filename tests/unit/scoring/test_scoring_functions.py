from __future__ import annotations

import numpy as np
import pytest
import torch

from embforge.scoring import (
    dense_scores,
    hybrid_scores,
    lexical_scores,
    maxsim_scores,
    multivector_list_scores,
    sparse_vector_scores,
)
from embforge.types import SparseVectors


def test_dense_scores_inner_products():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    d = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    assert torch.allclose(dense_scores(q, d), torch.tensor([[0.0, 1.0, 0.6], [0.8, 0.6, 1.0]]))


def test_lexical_keeps_max_weight_per_term_and_ignores_zero_weights():
    # query: term 5 twice (0.2 and 0.7 -> 0.7), term 9 (0.5), pad (id 1, weight 0)
    qw, qi = torch.tensor([[0.2, 0.7, 0.5, 0.0]]), torch.tensor([[5, 5, 9, 1]])
    dw, di = torch.tensor([[0.3, 0.1, 0.4], [2.0, 0.0, 0.0]]), torch.tensor([[5, 5, 1], [7, 1, 1]])
    s = lexical_scores(qw, qi, dw, di)
    assert s.shape == (1, 2)
    assert s[0, 0].item() == pytest.approx(0.7 * 0.3)  # max(0.3, 0.1) for the doc too
    assert s[0, 1].item() == 0.0


def test_lexical_has_gradients():
    qw = torch.tensor([[0.2, 0.7]], requires_grad=True)
    s = lexical_scores(qw, torch.tensor([[5, 5]]), torch.tensor([[1.5]]), torch.tensor([[5]]))
    s.sum().backward()
    assert qw.grad.tolist() == [[0.0, 1.5]]  # only the max occurrence gets gradient


def test_lexical_torch_equals_sparse_vectors():
    g = torch.Generator().manual_seed(0)
    qi, di = torch.randint(0, 20, (3, 6), generator=g), torch.randint(0, 20, (4, 9), generator=g)
    qw, dw = torch.rand(3, 6, generator=g), torch.rand(4, 9, generator=g)

    def to_sv(w, ids):
        rows = []
        for r in range(len(ids)):
            d: dict[int, float] = {}
            for t, x in zip(ids[r].tolist(), w[r].tolist()):
                d[t] = max(d.get(t, 0.0), x)
            rows.append(dict(sorted(d.items())))
        return SparseVectors.from_dicts(rows, 20)

    np.testing.assert_allclose(
        lexical_scores(qw, qi, dw, di).numpy(), sparse_vector_scores(to_sv(qw, qi), to_sv(dw, di)), atol=1e-6
    )


def test_maxsim_divides_by_query_tokens_and_ignores_padding():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # third query token is padding
    qm = torch.tensor([[1, 1, 0]])
    dm = torch.tensor([[1, 1, 0]])  # third doc token is padding
    # all real similarities are negative: a zero (or large) padding vector must not win the max
    d = torch.tensor([[[-1.0, -0.2], [-0.3, -0.5], [0.0, 0.0]]])
    assert maxsim_scores(q, qm, d, dm).item() == pytest.approx((-0.3 + -0.2) / 2)
    d_big_pad = torch.tensor([[[-1.0, -0.2], [-0.3, -0.5], [9.0, 9.0]]])
    assert maxsim_scores(q, qm, d_big_pad, dm).item() == pytest.approx((-0.3 + -0.2) / 2)
    d_pos = torch.tensor([[[0.5, 0.1], [0.2, 0.9], [0.0, 0.0]]])
    assert maxsim_scores(q, qm, d_pos, dm).item() == pytest.approx((0.5 + 0.9) / 2)


def test_maxsim_chunking_and_lists_agree():
    g = torch.Generator().manual_seed(1)
    q = [torch.randn(n, 4, generator=g).numpy() for n in (3, 5)]
    d = [torch.randn(n, 4, generator=g).numpy() for n in (2, 7, 1)]
    full = multivector_list_scores(q, d)
    want = np.array([[np.mean((a @ b.T).max(1)) for b in d] for a in q])
    np.testing.assert_allclose(full, want, atol=1e-6)


def test_hybrid_default_weights_and_normalize():
    s = hybrid_scores(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]))
    assert s.item() == pytest.approx(1 + 0.6 + 3)
    assert hybrid_scores(np.array([1.0]), None, np.array([3.0]), normalize=True)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least one"):
        hybrid_scores()
