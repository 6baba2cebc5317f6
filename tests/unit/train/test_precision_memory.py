"""bf16 where the hardware has it (auto precision, a 50-step loss curve within tolerance of fp32)
and the memory planner (token-budget GradCache sub-batches, activation checkpointing)."""

from __future__ import annotations

import itertools

import pytest
import torch

from embforge.errors import ConfigError
from embforge.losses import InfoNCELoss
from embforge.train.loop import Trainer
from embforge.train.memory import plan_sub_batches
from embforge.train.precision import cpu_flags, resolve_precision
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig
from embforge.train.step import cached_step, length_groups, plain_step
from embforge.types import Batch
from helpers.requires import missing
from helpers.tiny_heads import TinyThreeHead, random_batch

# ------------------------------------------------------------------ precision


def test_auto_picks_bf16_only_where_the_cpu_has_it(tmp_path):
    amx = resolve_precision("auto", "cpu", flags={"avx2", "amx_bf16", "amx_tile"})
    assert amx.precision == "bf16" and "amx_bf16" in amx.log_line()
    avx512 = resolve_precision("auto", "cpu", flags={"avx512f", "avx512_bf16"})
    assert avx512.precision == "bf16"
    avx2 = resolve_precision("auto", "cpu", flags={"avx2", "fma"})
    assert avx2.precision == "fp32" and "emulated" in avx2.log_line()
    assert resolve_precision("bf16", "cpu", flags={"avx2"}).precision == "bf16"  # explicit wins
    assert resolve_precision("fp32", "cpu", flags={"amx_bf16"}).precision == "fp32"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_default_precision_is_auto_and_validated():
    assert LoopConfig().precision == "auto"
    assert any("memory_budget_gib" in e for e in LoopConfig(memory_budget_gib=0).validate())


class _Pairs:
    """Endless (queries, documents) batches cycling over 4 fixed ones; resumable."""

    def __init__(self) -> None:
        self.data = [(random_batch(8, 12, seed=s), random_batch(8, 16, seed=s + 100)) for s in range(4)]
        self.pos = 0

    def __iter__(self):
        for i in itertools.count(self.pos):
            self.pos = i + 1
            yield self.data[i % len(self.data)]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


def _curve(tmp_path, precision: str, capsys) -> list[float]:
    model = TinyThreeHead(seed=3, hidden=32)
    loss = InfoNCELoss(("dense", "multivector"), temperature=0.1)

    def step(batch, _step):
        q, d = batch
        return cached_step(model, q, d, lambda a, b: loss(a, b, group_size=1), sub_batch_size=8)

    loop = LoopConfig(
        output_dir=str(tmp_path / precision),
        max_steps=50,
        precision=precision,
        checkpoint_every=0,
        progress=False,
        resume=False,
        threads=1,  # tiny tensors: a second thread only adds synchronisation on a busy machine
    )
    res = Trainer(
        model, step, _Pairs(), loop, OptimConfig(lr=3e-3), ScheduleConfig(name="constant"), 50
    ).fit()
    assert f"precision: {precision}" in capsys.readouterr().err  # the run says which path it took
    return [r["loss"] for r in res.log]


@pytest.mark.slow  # 100 optimizer steps: ~8 s on an idle 2-core CPU, ~50 s under load
def test_bf16_loss_curve_tracks_fp32_over_50_steps(tmp_path, capsys):
    fp32, bf16 = _curve(tmp_path, "fp32", capsys), _curve(tmp_path, "bf16", capsys)
    assert len(fp32) == len(bf16) == 50
    assert fp32[-1] < 0.6 * fp32[0]  # it trains
    assert bf16 != fp32  # autocast really ran in bf16
    for i, (a, b) in enumerate(zip(fp32, bf16)):
        assert abs(a - b) <= 0.05 + 0.1 * abs(a), (i, a, b)
    mean_gap = sum(abs(a - b) for a, b in zip(fp32, bf16)) / 50
    assert mean_gap <= 0.03 * (sum(fp32) / 50), mean_gap


# ------------------------------------------------------------------ memory planner


def test_plan_grows_with_budget_and_checkpointing_and_fails_with_the_fix():
    kw = dict(n_params=22_700_000, hidden=384, layers=6, heads=12, max_length=512)
    small = plan_sub_batches(budget_gib=2.0, **kw)
    big = plan_sub_batches(budget_gib=8.0, **kw)
    ckpt = plan_sub_batches(budget_gib=2.0, checkpointing=True, **kw)
    bf16 = plan_sub_batches(budget_gib=2.0, precision="bf16", **kw)
    assert 1 <= small.rows_at_max_length < big.rows_at_max_length
    assert ckpt.rows_at_max_length > small.rows_at_max_length
    assert bf16.rows_at_max_length > small.rows_at_max_length
    assert small.tokens_per_sub_batch == small.rows_at_max_length * 512
    assert "memory plan: budget 2.00 GiB" in small.log_line()
    with pytest.raises(ConfigError, match=r"loop.memory_budget_gib=0.7.*gradient_checkpointing"):
        plan_sub_batches(budget_gib=0.7, **kw)


def test_token_budget_groups_hold_at_most_the_budget():
    b = random_batch(40, 30, seed=7)
    lengths = b.attention_mask.sum(1)
    groups = length_groups(b, max_tokens=64)
    assert sorted(torch.cat(groups).tolist()) == list(range(40))
    for g in groups:
        assert len(g) == 1 or len(g) * int(lengths[g].max()) <= 64
    # short rows share a pass with more rows than long ones
    assert len(groups[-1]) > len(groups[0])


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_token_budget_cached_step_equals_plain():
    model = TinyThreeHead(seed=1)
    q, d = random_batch(6, 9, seed=2), random_batch(12, 14, seed=3)
    fn = lambda a, b: InfoNCELoss(("dense", "multivector"))(a, b, group_size=2)  # noqa: E731
    ref = plain_step(model, q, d, fn, group_by_length=False)
    g_ref = _grads(model)
    model.zero_grad(set_to_none=True)
    out = cached_step(model, q, d, fn, sub_batch_size=None, sub_batch_tokens=30)
    assert float(out.total) == pytest.approx(float(ref.total), rel=1e-5)
    for n, g in _grads(model).items():
        assert torch.allclose(g, g_ref[n], rtol=1e-4, atol=1e-6), n


def test_activation_checkpointing_with_gradcache_equals_plain():
    from embforge.model.builders import tiny_bert
    from embforge.model.config import EncoderConfig
    from embforge.model.encoder import Encoder
    from embforge.train.runtime import enable_checkpointing

    backbone, tok = tiny_bert(hidden=32, layers=2, heads=2, seed=0)
    enc = Encoder(backbone, tok, EncoderConfig(heads=["dense"], pooling="cls")).train()
    for m in enc.modules():  # no dropout: plain and cached draw their masks in a different order
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    q = Batch(*_ids(tok, ["a short query", "another one", "x"]))
    d = Batch(*_ids(tok, ["a much longer document " * 3, "doc", "a middling document here"]))
    fn = lambda a, b: InfoNCELoss(("dense",))(a, b, group_size=1)  # noqa: E731
    plain_step(enc, q, d, fn, group_by_length=False)
    g_ref = _grads(enc)
    enc.zero_grad(set_to_none=True)
    enable_checkpointing(enc.backbone)
    assert enc.backbone.is_gradient_checkpointing
    cached_step(enc, q, d, fn, sub_batch_size=2)
    g = _grads(enc)
    assert set(g) == set(g_ref)
    for n in g_ref:
        assert torch.allclose(g[n], g_ref[n], rtol=1e-4, atol=1e-6), n


def _ids(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_measured_plan_uses_the_probe_and_fits_the_budget():
    from embforge.train.memory import measure_sub_batch_cost, plan_measured

    mib = 2**20
    # a probe whose "activations" are 64 MiB per text, touched so they count in RSS
    measured = measure_sub_batch_cost(lambda rows: torch.ones(rows * 16 * mib).sum())
    if measured is None:
        missing("peak RSS cannot be reset here (needs Linux /proc/self/clear_refs)")
    per_text, peak_one = measured
    assert 40 * mib < per_text < 90 * mib
    plan = plan_measured(1_000_000, 100 * mib, 500 * mib, 1000, budget_gib=1.0)
    assert plan is not None and "measured" in plan.log_line()
    assert plan.fixed_bytes == 400 * mib + 8_000_000  # peak with one text - its activations + AdamW
    assert plan.rows_at_max_length == (1024 * mib - plan.fixed_bytes) // (plan.bytes_per_token * 1000)
    assert plan_measured(1_000_000, 900 * mib, 1000 * mib, 1000, budget_gib=1.0) is None  # falls back
