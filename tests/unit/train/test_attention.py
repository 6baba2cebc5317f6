"""``loop.attention``: FlashAttention-2 varlen attention where it can run, the backbone's own elsewhere,
a log line saying which, and a clear error for an explicit choice that cannot run."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from embforge.config import build_config
from embforge.errors import ConfigError
from embforge.model.attention import apply_attention, hf_backbones, resolve_attention
from embforge.train.loop import Trainer
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig
from embforge.types import LossOutput


def _bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0,
    )  # fmt: skip
    return BertModel(cfg, add_pooling_layer=False).eval()


def test_auto_picks_flash_only_where_everything_it_needs_is_there():
    ok = resolve_attention("auto", "cuda", "bf16", supports_flash=True, flash_installed=True)
    assert ok.implementation == "flash_attention_2" and "varlen" in ok.log_line()
    for dev, prec, sup, inst, why in [
        ("cpu", "bf16", True, True, "device is cpu"),
        ("cuda", "bf16", True, False, "flash_attn package is not installed"),
        ("cuda", "fp32", True, True, "needs bf16 or fp16"),
        ("cuda", "bf16", False, True, "no FlashAttention-2 path"),
    ]:
        got = resolve_attention("auto", dev, prec, supports_flash=sup, flash_installed=inst)
        assert got.implementation is None and why in got.reason, (dev, prec, sup, inst, got)


def test_explicit_choices_are_kept_or_refused_with_the_fix():
    assert resolve_attention("eager", "cpu", "fp32", supports_flash=False).implementation == "eager"
    assert resolve_attention("sdpa", "cuda", "bf16", supports_flash=True).log_line() == (
        "attention: sdpa (set by loop.attention)"
    )
    with pytest.raises(
        ConfigError, match=r"flash_attention_2 cannot run: the device is cpu.*use auto or sdpa"
    ):
        resolve_attention("flash_attention_2", "cpu", "bf16", supports_flash=True, flash_installed=True)
    with pytest.raises(ConfigError, match="choose one of auto, sdpa, eager, flash_attention_2"):
        resolve_attention("flash", "cpu", "bf16", supports_flash=True)
    assert LoopConfig().attention == "auto"
    assert build_config(LoopConfig, {"attention": "eager"}).attention == "eager"
    with pytest.raises(ConfigError, match="attention"):
        build_config(LoopConfig, {"attention": "fast"})


class _Wrap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _bert()
        self.head = nn.Linear(16, 4)


def test_backbones_are_the_outermost_hf_models_and_switching_keeps_outputs():
    model = _Wrap()
    assert hf_backbones(model) == [model.backbone]  # not its embeddings/encoder submodules
    ids = torch.randint(1, 50, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        before = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    choice = resolve_attention("eager", "cpu", "fp32", supports_flash=True)
    assert apply_attention(model, choice) == ["BertModel"]
    assert model.backbone.config._attn_implementation == "eager"
    with torch.no_grad():
        after = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(after[keep], before[keep], atol=1e-5, rtol=1e-5)
    assert apply_attention(model, resolve_attention("auto", "cpu", "fp32", supports_flash=True)) == []


class _Same:
    """The same batch forever; resumable (the loop checkpoints its position at the end)."""

    def __init__(self, batch: torch.Tensor) -> None:
        self.batch, self.pos = batch, 0

    def __iter__(self):
        for i in itertools.count(self.pos):
            self.pos = i + 1
            yield self.batch

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


def test_the_training_loop_applies_and_logs_the_choice(tmp_path, capsys):
    model = _Wrap()
    ids = torch.randint(1, 50, (4, 8))

    def step(batch, _step):
        h = model.backbone(input_ids=batch).last_hidden_state[:, 0]
        loss = model.head(h).pow(2).mean()
        loss.backward()
        return LossOutput(total=loss.detach())

    loop = LoopConfig(
        output_dir=str(tmp_path), max_steps=2, precision="fp32", attention="eager",
        checkpoint_every=0, progress=False, resume=False, threads=1,
    )  # fmt: skip
    Trainer(model, step, _Same(ids), loop, OptimConfig(lr=1e-3), ScheduleConfig(name="constant"), 2).fit()
    assert "attention: eager (set by loop.attention)" in capsys.readouterr().err
    assert model.backbone.config._attn_implementation == "eager"


def test_inference_attention_switches_to_flash_for_the_block_and_restores(monkeypatch):
    """Encode on CUDA in bf16/fp16 with flash_attn: FlashAttention-2 for the call, the backbone's
    previous attention after it (even when the call fails); elsewhere nothing changes."""
    from embforge.model.attention import inference_attention

    model = _Wrap()
    before = model.backbone.config._attn_implementation
    calls = []

    def fake_set(self, impl):  # transformers refuses flash_attention_2 without a GPU and the package
        calls.append(impl)
        self.config._attn_implementation = impl

    monkeypatch.setattr(BertModel, "set_attn_implementation", fake_set)
    for dtype in (torch.bfloat16, torch.float16):
        with inference_attention(model, "cuda", dtype, flash_installed=True) as choice:
            assert choice.implementation == "flash_attention_2" and "varlen" in choice.reason
            assert model.backbone.config._attn_implementation == "flash_attention_2"
        assert model.backbone.config._attn_implementation == before
    with pytest.raises(RuntimeError, match="boom"):
        with inference_attention(model, "cuda", torch.bfloat16, flash_installed=True):
            raise RuntimeError("boom")
    assert model.backbone.config._attn_implementation == before
    assert calls == ["flash_attention_2", before] * 3
    for device, dtype, installed in (
        ("cpu", torch.bfloat16, True),
        ("cuda", None, True),
        ("cuda", torch.bfloat16, False),
    ):
        with inference_attention(model, device, dtype, flash_installed=installed) as choice:
            assert choice.implementation is None
            assert model.backbone.config._attn_implementation == before
    assert len(calls) == 6
