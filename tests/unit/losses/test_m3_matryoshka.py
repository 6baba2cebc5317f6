"""M3 self-distillation + Matryoshka (the quickstart's recipe): extra dense terms on truncated dims."""

import torch

from embforge.losses import build_loss
from embforge.losses.infonce import WithMatryoshka, info_nce
from embforge.losses.matryoshka import matryoshka_dense
from embforge.train.recipes.contrastive import LossConfig
from embforge.types import EmbeddingOutput


def _out(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    dense = torch.nn.functional.normalize(torch.randn(b, 16, generator=g), dim=-1)
    ids = torch.randint(5, 50, (b, t), generator=g)
    sparse = torch.rand(b, t, generator=g)
    mv = torch.nn.functional.normalize(torch.randn(b, t - 1, 8, generator=g), dim=-1)
    mask = torch.ones(b, t, dtype=torch.long)
    return EmbeddingOutput(dense, sparse, mv, mask[:, 1:], ids, mask)


def test_m3_with_matryoshka_adds_the_truncated_terms():
    q, d = _out(3, 6, 0), _out(6, 7, 1)
    base = build_loss("m3", temperature=0.05)
    loss = LossConfig(
        name="m3", temperature=0.05, matryoshka_dims=[4, 8], matryoshka_weights=[0.5, 1.0]
    ).build(["dense", "sparse", "multivector"])
    assert isinstance(loss, WithMatryoshka)
    out, ref = loss(q, d, group_size=2), base(q, d, group_size=2)
    extra = {
        k: info_nce(matryoshka_dense(q.dense, k) @ matryoshka_dense(d.dense, k).T, 2, 0.05) for k in (4, 8)
    }
    torch.testing.assert_close(out.total, ref.total + 0.5 * extra[4] + extra[8])
    torch.testing.assert_close(out.parts["infonce/dense@4"], extra[4])
    assert set(ref.parts) < set(out.parts)
    # without dims the recipe's m3 loss is unchanged
    plain = LossConfig(name="m3", temperature=0.05).build(["dense", "sparse", "multivector"])
    torch.testing.assert_close(plain(q, d, group_size=2).total, ref.total)
