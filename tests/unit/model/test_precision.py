"""CPU units and ``encode(dtype="auto")``: bf16 only where the CPU multiplies it natively (issue 19)."""

from __future__ import annotations

import logging

import numpy as np

from embforge.model import precision as P
from embforge.model.precision import CpuUnits, cpu_units, resolve_dtype

SPR = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8\n"
ZEN2 = "processor : 0\nflags : fpu sse avx2 fma\n"


def test_units_from_cpuinfo(tmp_path):
    (tmp_path / "spr").write_text(SPR)
    (tmp_path / "zen2").write_text(ZEN2)
    spr, zen2 = cpu_units(tmp_path / "spr"), cpu_units(tmp_path / "zen2")
    assert spr.native_bf16 and spr.int8_units == "AMX-INT8"
    assert "amx_bf16" in spr.describe() and spr.capability  # torch's capability string is always there
    assert not zen2.native_bf16 and zen2.int8_units == "AVX2"
    assert resolve_dtype("auto", "cpu", spr).dtype == "bf16"
    assert resolve_dtype("auto", "cpu", zen2).dtype == "fp32"
    assert "emulated" in resolve_dtype("auto", "cpu", zen2).log_line()
    assert resolve_dtype("fp32", "cpu", spr).dtype == "fp32"


def test_encode_auto_resolves_and_logs(tiny_m3, monkeypatch, caplog):
    texts = ["the dog runs", "a cat"]
    monkeypatch.setattr(P, "cpu_units", lambda *a: CpuUnits(("avx2",), "AVX2"))
    with caplog.at_level(logging.INFO, logger="embforge"):
        auto = tiny_m3.encode(texts, dtype="auto")
    assert "encode precision: fp32 (auto: bf16 would be emulated" in caplog.text
    np.testing.assert_allclose(auto.dense, tiny_m3.encode(texts).dense, atol=1e-6)
    monkeypatch.setattr(P, "cpu_units", lambda *a: CpuUnits(("amx_bf16",), "AVX512"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="embforge"):
        bf16 = tiny_m3.encode(texts, dtype="auto")
    assert "encode precision: bf16 (auto: native bf16" in caplog.text
    assert ((bf16.dense * auto.dense).sum(1) > 0.98).all()


def test_bf16_on_cpu_runs_a_cached_bf16_copy_of_the_backbone(tiny_m3):
    """bf16 on a CPU: a bf16 weight copy (not autocast), fp32 heads, close to fp32, remade after a weight changes."""
    import torch

    texts = ["the dog runs in the park", "a cat sleeps", "der Hund läuft im Park und bellt laut"]
    heads = ("dense", "sparse", "multivector")
    fp32 = tiny_m3.encode(texts, heads=heads)
    bf16 = tiny_m3.encode(texts, heads=heads, dtype="bf16")
    assert bf16.dense.dtype == np.float32
    cast = P._CASTS[tiny_m3.backbone][1]
    assert next(cast.parameters()).dtype == torch.bfloat16
    assert next(tiny_m3.backbone.parameters()).dtype == torch.float32  # the model itself is untouched
    assert ((bf16.dense * fp32.dense).sum(1) >= 0.99).all()
    for a, b in zip(bf16.multivector, fp32.multivector):
        assert ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean() >= 0.99
    assert P.cast_backbone(tiny_m3.backbone) is cast  # cached while the weights are unchanged
    with torch.no_grad():
        next(tiny_m3.backbone.parameters()).mul_(1.0)  # an in-place update (as an optimizer step)
    assert P.cast_backbone(tiny_m3.backbone) is not cast
    assert not P.cast_weights("bf16", "cuda") and not P.cast_weights("fp16", "cpu")
