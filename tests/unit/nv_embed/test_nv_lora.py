"""LoRA via peft: only adapters train; merged and adapter checkpoints give the same outputs."""

from __future__ import annotations

import pytest
import torch

from embforge.errors import CheckpointError, ConfigError
from embforge.nv_embed.decoder import is_bidirectional, set_bidirectional
from embforge.nv_embed.lora import LoraSettings, apply_lora, is_lora, load_adapter, merge_lora, save_adapter


def _ids():
    return torch.randint(5, 1000, (2, 7), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_only_adapter_params_train(make_decoder, kind):
    model = apply_lora(set_bidirectional(make_decoder(kind)), LoraSettings(r=4, alpha=8, dropout=0.0))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    loss = model(input_ids=_ids()).last_hidden_state.pow(2).mean()
    loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed)  # B starts at zero and gets the first gradient
    assert is_bidirectional(model)


def _perturb_adapters(model):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))


def test_merge_and_adapter_roundtrip(make_decoder, tmp_path):
    model = apply_lora(set_bidirectional(make_decoder("llama")), LoraSettings(r=4, alpha=8, dropout=0.0))
    _perturb_adapters(model)
    model.eval()
    ids = _ids()
    with torch.no_grad():
        ref = model(input_ids=ids).last_hidden_state
        base = make_decoder("llama")(input_ids=ids).last_hidden_state
    assert (ref - base).abs().max() > 1e-3  # the adapters do something

    save_adapter(model, tmp_path / "adapter")
    again = load_adapter(set_bidirectional(make_decoder("llama")), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(input_ids=ids).last_hidden_state, ref)

    merged = merge_lora(model)
    assert not is_lora(merged) and is_bidirectional(merged)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).last_hidden_state, ref, atol=1e-5, rtol=1e-5)


def test_bad_lora_settings(make_decoder):
    with pytest.raises(ConfigError, match=r"lora.r must be >= 1, got 0[\s\S]*match no Linear module"):
        apply_lora(make_decoder("llama"), LoraSettings(r=0, target_modules=["qkv"]))
    with pytest.raises(CheckpointError, match="adapter_config.json is missing"):
        load_adapter(make_decoder("llama"), "/nonexistent/adapter")
    with pytest.raises(CheckpointError, match="has no adapters"):
        save_adapter(make_decoder("llama"), "/tmp/x")
