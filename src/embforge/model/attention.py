"""Which attention kernel a training run or an encode uses: unpadded (varlen) attention on GPUs.

A padded batch of texts of unequal length spends attention FLOPs and memory on pad tokens; M3
(Chen et al., 2024, "BGE M3-Embedding", section 3.4) trains on inputs up to 8,192 tokens and
groups them by length for exactly this reason. FlashAttention-2 (Dao, 2023) takes the batch
unpadded: Hugging Face models whose class supports it (``_supports_flash_attn``: BERT, XLM-R,
Llama, Mistral, Qwen2 ...) remove the pad tokens from Q/K/V before the kernel and run
``flash_attn_varlen_func`` over the packed sequences when ``attn_implementation`` is
``flash_attention_2`` and the batch has an attention mask.

``loop.attention: auto`` picks ``flash_attention_2`` on a CUDA device when the ``flash_attn``
package is importable, the run computes in bf16 (the kernel has no fp32 path) and the backbone
supports it; otherwise the backbone keeps the attention it was loaded with (sdpa), and the log
line says why. On CPU the training loop runs its own bf16-friendly eager attention
(``embforge.train.fast_dropout``), so ``auto`` changes nothing there.

``Encoder.encode`` on a CUDA device with bf16 or fp16 autocast does the same for the length of
the call (``inference_attention``): FlashAttention-2 where it can run, the backbone's own
attention (sdpa) otherwise, and the backbones' previous setting afterwards.

    >>> resolve_attention("auto", "cpu", "bf16", supports_flash=True).implementation is None
    True
    >>> resolve_attention("sdpa", "cpu", "fp32", supports_flash=True).log_line()
    'attention: sdpa (set by loop.attention)'
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from embforge.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "ATTENTIONS",
    "AttentionChoice",
    "resolve_attention",
    "apply_attention",
    "hf_backbones",
    "supports_flash",
    "inference_attention",
]

ATTENTIONS = ("auto", "sdpa", "eager", "flash_attention_2")
FLASH = "flash_attention_2"


@dataclass(frozen=True)
class AttentionChoice:
    """The attention implementation to set (None = keep the backbone's) and why, for the log line."""

    implementation: str | None
    reason: str

    def log_line(self) -> str:
        return f"attention: {self.implementation or 'unchanged'} ({self.reason})"


def flash_attn_available() -> bool:
    """The ``flash_attn`` package (FlashAttention-2's varlen kernels) is importable."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_attention(
    setting: str,
    device: torch.device | str,
    precision: str,
    supports_flash: bool,
    flash_installed: bool | None = None,
) -> AttentionChoice:
    """``loop.attention`` for a run on ``device`` in ``precision`` (``fp32`` | ``bf16`` | ``fp16``).

    ``supports_flash``: every backbone of the model declares FlashAttention-2 support.
    ``flash_installed`` overrides the import check (tests). An explicit ``flash_attention_2``
    that cannot run raises a ConfigError naming the reason and the fix.
    """
    if setting not in ATTENTIONS:
        raise ConfigError(f"loop.attention={setting!r}: choose one of {', '.join(ATTENTIONS)}")
    dev = torch.device(device)
    installed = flash_attn_available() if flash_installed is None else flash_installed
    if setting != FLASH and setting != "auto":
        return AttentionChoice(setting, "set by loop.attention")
    problems = []
    if dev.type != "cuda":
        problems.append(f"the device is {dev.type}, FlashAttention-2 runs on CUDA GPUs")
    if not installed:
        problems.append("the flash_attn package is not installed (pip install flash-attn)")
    if precision not in ("bf16", "fp16"):
        problems.append(
            f"precision is {precision}, FlashAttention-2 needs bf16 or fp16 (loop.precision=bf16)"
        )
    if not supports_flash:
        problems.append("the backbone has no FlashAttention-2 path in transformers")
    if setting == FLASH and problems:
        raise ConfigError(
            "loop.attention=flash_attention_2 cannot run: " + "; ".join(problems) + "; use auto or sdpa"
        )
    if problems:
        return AttentionChoice(None, "auto: " + problems[0])
    why = "set by loop.attention" if setting == FLASH else "auto: CUDA + flash_attn + bf16"
    return AttentionChoice(FLASH, f"{why}; pad tokens are removed before attention (varlen)")


def hf_backbones(model: nn.Module) -> list[nn.Module]:
    """The outermost Hugging Face models inside ``model`` (the encoders' backbones)."""
    from transformers import PreTrainedModel

    found: list[nn.Module] = []
    inner: set[int] = set()
    for m in model.modules():
        if id(m) in inner or not isinstance(m, PreTrainedModel):
            continue
        found.append(m)
        inner.update(id(x) for x in m.modules())
    return found


def supports_flash(backbones: list[nn.Module]) -> bool:
    """Every one of ``backbones`` (``hf_backbones``) declares a FlashAttention-2 path in transformers."""
    return bool(backbones) and all(getattr(type(b), "_supports_flash_attn", False) for b in backbones)


def apply_attention(model: nn.Module, choice: AttentionChoice) -> list[str]:
    """Set ``choice``'s implementation on every backbone of ``model``; returns their class names."""
    if choice.implementation is None:
        return []
    done = []
    for bb in hf_backbones(model):
        if getattr(bb.config, "_attn_implementation", None) != choice.implementation:
            bb.set_attn_implementation(choice.implementation)  # type: ignore[operator]
        done.append(type(bb).__name__)
    return done


@contextlib.contextmanager
def inference_attention(
    model: nn.Module,
    device: torch.device | str,
    autocast: torch.dtype | None,
    flash_installed: bool | None = None,
) -> Iterator[AttentionChoice]:
    """FlashAttention-2 (pad tokens removed: varlen) on every backbone of ``model`` for the block,
    when ``auto`` would choose it for ``device`` and the ``autocast`` dtype (bf16 / fp16 on CUDA
    with ``flash_attn`` installed); the backbones' previous implementations are restored after.
    Elsewhere nothing changes (the yielded choice says why)."""
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(autocast, "fp32")  # type: ignore[arg-type]
    backbones = hf_backbones(model)
    choice = resolve_attention("auto", device, precision, supports_flash(backbones), flash_installed)
    before = [getattr(b.config, "_attn_implementation", None) for b in backbones]
    if choice.implementation is not None:
        apply_attention(model, choice)
        logger.debug(choice.log_line())
    try:
        yield choice
    finally:
        if choice.implementation is not None:
            for b, impl in zip(backbones, before):
                if impl is not None and getattr(b.config, "_attn_implementation", None) != impl:
                    b.set_attn_implementation(impl)  # type: ignore[operator]
