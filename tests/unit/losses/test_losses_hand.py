"""Each loss against values computed by hand (closed forms with math.log / math.exp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from embforge.losses import (
    LOSSES,
    DistillKLLoss,
    InfoNCELoss,
    M3SelfDistillLoss,
    SimCSELoss,
    build_loss,
    candidate_logits,
    info_nce,
    kl_distill_loss,
    matryoshka_dense,
    self_distill_loss,
    simcse_sup_loss,
    simcse_unsup_loss,
    teacher_shares,
)
from embforge.scoring import lexical_scores, maxsim_scores
from embforge.types import EmbeddingOutput


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_info_nce_in_batch_and_hard_negatives():
    # Q=2, G=2: columns (p0, n0, p1, n1)
    s = torch.tensor([[0.5, 0.1, 0.2, 0.3], [0.0, 0.4, 0.6, -0.2]])
    tau = 0.5
    l0 = -(0.5 / tau) + lse(0.5 / tau, 0.1 / tau, 0.2 / tau, 0.3 / tau)
    l1 = -(0.6 / tau) + lse(0.0, 0.4 / tau, 0.6 / tau, -0.2 / tau)
    assert float(info_nce(s, 2, tau)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # in-batch negatives off: own group only (NV-Embed stage 2)
    o0 = -(0.5 / tau) + lse(0.5 / tau, 0.1 / tau)
    o1 = -(0.6 / tau) + lse(0.6 / tau, -0.2 / tau)
    assert float(info_nce(s, 2, tau, in_batch_negatives=False)) == pytest.approx((o0 + o1) / 2, rel=1e-6)


def test_in_batch_off_logits_contain_no_other_queries_documents():
    s = torch.arange(12.0).view(2, 6)  # Q=2, G=3
    logits, labels = candidate_logits(s, 3, in_batch_negatives=False)
    assert logits.tolist() == [[0.0, 1.0, 2.0], [9.0, 10.0, 11.0]]
    assert labels.tolist() == [0, 0]


def test_negative_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected Q\*G = 2\*3: every query needs exactly 2 hard negatives"):
        info_nce(torch.zeros(2, 5), 3)


def _emb(dense):
    return EmbeddingOutput(dense=torch.tensor(dense, dtype=torch.float32))


def test_infonce_loss_default_temperature_and_parts():
    loss = InfoNCELoss()
    assert loss.temperature == 0.02
    q = _emb([[1.0, 0.0], [0.0, 1.0]])
    d = _emb([[1.0, 0.0], [0.6, 0.8]])
    out = loss(q, d, group_size=1)
    # q0: pos 1.0, neg 0.0; q1: pos 0.8, neg 0.0 ; tau .02
    l0 = -50.0 + lse(50.0, 0.0)
    l1 = -40.0 + lse(0.0, 40.0)
    assert float(out.total) == pytest.approx((l0 + l1) / 2, rel=1e-5)
    assert set(out.parts) == {"infonce/dense"}


def test_matryoshka_full_plus_truncated_dim():
    q = _emb([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]])
    d = _emb([[0.6, 0.0, 0.8], [0.0, 0.8, 0.6]])
    tau = 1.0
    out = InfoNCELoss(temperature=tau, matryoshka_dims=[1], matryoshka_weights=[0.5])(q, d, group_size=1)
    full = ((-0.36 + lse(0.36, 0.64)) + (-0.96 + lse(0.64, 0.96))) / 2
    # dim 1: vectors become sign(x0): q=(1),(0->0 normalised stays 0); d=(1),(0)
    qt, dt = matryoshka_dense(q.dense, 1), matryoshka_dense(d.dense, 1)
    assert qt.tolist() == [[1.0], [0.0]] and dt.tolist() == [[1.0], [0.0]]
    trunc = ((-1.0 + lse(1.0, 0.0)) + (-0.0 + lse(0.0, 0.0))) / 2
    assert float(out.parts["infonce/dense"]) == pytest.approx(full, rel=1e-6)
    assert float(out.parts["infonce/dense@1"]) == pytest.approx(trunc, rel=1e-6)
    assert float(out.total) == pytest.approx(full + 0.5 * trunc, rel=1e-6)


def test_matryoshka_dim_too_large():
    with pytest.raises(ValueError, match="matryoshka dim 8 exceeds the embedding dim 3"):
        matryoshka_dense(torch.ones(2, 3), 8)


def _m3_by_hand(sd, sl, sm, w, lw, weighted):
    # one query, two candidates, label 0, tau = 1
    si = [w[0] * a + w[1] * b + w[2] * c for a, b, c in zip(sd, sl, sm)]

    def ce(s):
        return -s[0] + lse(*s)

    def kd(s):
        z = lse(*si)
        t = [math.exp(x - z) for x in si]
        zs = lse(*s)
        return -sum(ti * (x - zs) for ti, x in zip(t, s))

    hard = lw[0] * ce(sd) + lw[1] * ce(sl) + lw[2] * ce(sm) + ce(si)
    soft = lw[0] * kd(sd) + lw[1] * kd(sl) + lw[2] * kd(sm)
    return (hard / 4 + soft / 3) / 2 if weighted else hard + soft


@pytest.mark.parametrize("weighted", [True, False])
def test_m3_self_distillation_matches_spec(weighted):
    sd, sl, sm = [0.9, 0.2], [3.0, 4.0], [0.5, 0.7]
    t = [torch.tensor([v]) for v in (sd, sl, sm)]
    out = self_distill_loss(*t, torch.tensor([0]), temperature=1.0, weighted=weighted)
    w, lw = ((1, 0.3, 1), (1, 0.1, 1)) if weighted else ((1, 1, 1), (1, 1, 1))
    assert float(out.total) == pytest.approx(_m3_by_hand(sd, sl, sm, w, lw, weighted), rel=1e-6)
    assert set(out.parts) == {
        "infonce/dense",
        "infonce/sparse",
        "infonce/multivector",
        "infonce/inter",
        "kd/dense",
        "kd/sparse",
        "kd/multivector",
        "teacher/share_dense",
        "teacher/share_sparse",
        "teacher/share_multivector",
    }
    # two candidates: head i's share of Var(s_inter) is w_i (s_i[0] - s_i[1]) / (s_inter[0] - s_inter[1])
    deltas = [w[i] * (v[0] - v[1]) for i, v in enumerate((sd, sl, sm))]
    for name, d in zip(("dense", "sparse", "multivector"), deltas):
        assert float(out.parts[f"teacher/share_{name}"]) == pytest.approx(d / sum(deltas), rel=1e-5)


def test_m3_warmup_is_infonce_only():
    """Before self_distill_start_step (distill=False): L only, no kd term, shares still logged."""
    sd, sl, sm = [0.9, 0.2], [3.0, 4.0], [0.5, 0.7]
    t = [torch.tensor([v]) for v in (sd, sl, sm)]
    out = self_distill_loss(*t, torch.tensor([0]), temperature=1.0, distill=False)
    assert not any(k.startswith("kd/") for k in out.parts)
    hard = sum(
        lw * float(out.parts[f"infonce/{h}"])
        for lw, h in zip((1, 0.1, 1), ("dense", "sparse", "multivector"))
    )
    assert float(out.total) == pytest.approx((hard + float(out.parts["infonce/inter"])) / 4, rel=1e-6)
    assert sum(
        float(out.parts[f"teacher/share_{h}"]) for h in ("dense", "sparse", "multivector")
    ) == pytest.approx(1)


def test_teacher_shares_name_the_dominant_head():
    """A lexical score 20x wider than the others takes most of Var(s_inter) at w = (1, 0.3, 1)."""
    g = torch.Generator().manual_seed(0)
    sd, sm = torch.randn(8, 16, generator=g) * 0.1, torch.randn(8, 16, generator=g) * 0.1
    sl = torch.randn(8, 16, generator=g) * 2.0
    shares = teacher_shares([sd, sl, sm], (1.0, 0.3, 1.0))
    assert float(shares.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(shares[1]) > 0.8
    balanced = teacher_shares([sd, sl * 0.16, sm], (1.0, 0.3, 1.0))
    assert float(balanced[1]) < 0.5
    assert torch.equal(teacher_shares([torch.ones(2, 3)] * 3, (1, 1, 1)), torch.zeros(3))


def test_m3_teacher_is_detached():
    s = [torch.tensor([[0.9, 0.2]], requires_grad=True) for _ in range(3)]
    out = self_distill_loss(*s, torch.tensor([0]), temperature=1.0)
    # gradient of the kd term of dense alone: softmax(s_d) - teacher (no teacher gradient)
    g = torch.autograd.grad(out.parts["kd/dense"], s[0])[0]
    si = s[0].detach() * 1 + s[1].detach() * 0.3 + s[2].detach() * 1
    expect = torch.softmax(s[0].detach(), -1) - torch.softmax(si, -1)
    assert torch.allclose(g, expect, atol=1e-6)


def test_m3_loss_on_embedding_outputs_uses_all_heads():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 6, 6], [7, 8, 0]])
    q = EmbeddingOutput(
        dense=F.normalize(torch.randn(2, 4), dim=-1),
        sparse=torch.rand(2, 3),
        multivector=F.normalize(torch.randn(2, 2, 4), dim=-1),
        multivector_mask=torch.ones(2, 2),
        input_ids=ids,
    )
    d = EmbeddingOutput(
        dense=F.normalize(torch.randn(4, 4), dim=-1),
        sparse=torch.rand(4, 3),
        multivector=F.normalize(torch.randn(4, 2, 4), dim=-1),
        multivector_mask=torch.ones(4, 2),
        input_ids=torch.tensor([[5, 9, 9], [6, 7, 8]] * 2),
    )
    out = M3SelfDistillLoss()(q, d, group_size=2)
    assert torch.isfinite(out.total)
    with pytest.raises(ValueError, match="add 'sparse' to model.heads"):
        M3SelfDistillLoss()(EmbeddingOutput(dense=q.dense), EmbeddingOutput(dense=d.dense), group_size=2)


def test_lexical_scores_max_weight_per_term_brute_force():
    q_ids = torch.tensor([[1, 2, 2, 0]])
    q_w = torch.tensor([[0.5, 0.2, 0.7, 0.0]])
    d_ids = torch.tensor([[2, 3, 1], [4, 4, 4]])
    d_w = torch.tensor([[0.4, 0.9, 0.1], [1.0, 1.0, 1.0]])
    # terms shared with d0: 1 (0.5*0.1) and 2 (max(0.2,0.7)*0.4); none with d1
    assert lexical_scores(q_w, q_ids, d_w, d_ids).tolist()[0] == pytest.approx([0.5 * 0.1 + 0.7 * 0.4, 0.0])


def test_maxsim_divides_by_query_tokens_and_ignores_padding():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    qm = torch.tensor([[1, 1, 0]])  # third token is padding
    d = torch.tensor([[[0.6, 0.8], [-1.0, 0.0]], [[-0.6, -0.8], [0.0, 0.0]]])
    dm = torch.tensor([[1, 1], [1, 0]])  # doc 1's second (zero) vector is padding
    s = maxsim_scores(q, qm, d, dm)
    assert s.tolist()[0] == pytest.approx([(0.6 + 0.8) / 2, (-0.6 - 0.8) / 2])


def test_simcse_unsup_and_sup_by_hand():
    h1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    h2 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # cosine: identity matrix
    tau = 0.5
    each = -(1 / tau) + lse(1 / tau, 0.0)
    assert float(simcse_unsup_loss(h1, h2, tau)) == pytest.approx(each, rel=1e-6)
    neg = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    # anchor 0: cands (pos0=1, pos1=0, neg0=-1, neg1=1); anchor 1: (0, 1, 0, 0)
    l0 = -(1 / tau) + lse(1 / tau, 0.0, -1 / tau, 1 / tau)
    l1 = -(1 / tau) + lse(0.0, 1 / tau, 0.0, 0.0)
    assert float(simcse_sup_loss(h1, h2, neg, tau)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # through the grouped layout: docs (pos, neg) per anchor
    d = torch.stack([h2[0], neg[0], h2[1], neg[1]])
    out = SimCSELoss(True, tau)(EmbeddingOutput(dense=h1), EmbeddingOutput(dense=d), group_size=2)
    assert float(out.total) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="expects single sentences encoded twice"):
        SimCSELoss(False)(EmbeddingOutput(dense=h1), EmbeddingOutput(dense=d), group_size=2)


def test_kl_distill_by_hand():
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0]])  # uniform target
    p = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    expect = sum(0.5 * (math.log(0.5) - math.log(x)) for x in p)
    assert float(kl_distill_loss(student, teacher, 1.0, 1.0)) == pytest.approx(expect, rel=1e-6)
    loss = DistillKLLoss(temperature=1.0)
    q = _emb([[1.0, 0.0]])
    d = _emb([[1.0, 0.0], [0.0, 1.0]])
    assert float(loss(q, d, group_size=2, teacher_scores=teacher).total) == pytest.approx(expect, rel=1e-6)
    with pytest.raises(ValueError, match="needs teacher scores"):
        loss(q, d, group_size=2)
    with pytest.raises(ValueError, match="one teacher score per positive and negative"):
        loss(q, d, group_size=2, teacher_scores=torch.zeros(1, 3))


def test_registry_names_and_unknown_loss():
    assert LOSSES.names() == ["distill", "infonce", "m3", "simcse_sup", "simcse_unsup"]
    assert build_loss("simcse_sup").temperature == 0.05
    from embforge.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown loss 'infonc'; choose from: distill, infonce"):
        build_loss("infonc")


@pytest.mark.parametrize("weighted", [True, False])
def test_m3_before_self_distillation_starts(weighted):
    sd, sl, sm = [0.9, 0.2], [3.0, 4.0], [0.5, 0.7]
    t = [torch.tensor([v]) for v in (sd, sl, sm)]
    out = self_distill_loss(*t, torch.tensor([0]), temperature=1.0, weighted=weighted, distill=False)
    w, lw = ((1, 0.3, 1), (1, 0.1, 1)) if weighted else ((1, 1, 1), (1, 1, 1))
    si = [w[0] * a + w[1] * b + w[2] * c for a, b, c in zip(sd, sl, sm)]

    def ce(s):
        return -s[0] + lse(*s)

    hard = lw[0] * ce(sd) + lw[1] * ce(sl) + lw[2] * ce(sm) + ce(si)
    assert float(out.total) == pytest.approx(hard / 4 if weighted else hard, rel=1e-6)
    assert not any(k.startswith("kd/") for k in out.parts)
