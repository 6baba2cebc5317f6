"""LoRA adapters on a backbone through peft (NV-Embed fine-tunes Mistral-7B with rank 16).

``apply_lora`` wraps the backbone in a peft model: the base weights are frozen,
only the low-rank adapters (and whatever sits outside the backbone, e.g. the
latent-attention pooling) train. After training, either keep the adapters
(``save_adapter`` writes peft's ``adapter_config.json`` + safetensors, a few MB
for a 7B model) or fold them into the weights (``merge_lora``) and save a plain
model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from embforge.errors import CheckpointError, ConfigError, MissingDependencyError

if TYPE_CHECKING:  # torch stays unimported until a function runs (recipes load fast)
    from peft import PeftModel
    from torch import nn

__all__ = [
    "DECODER_TARGET_MODULES",
    "LoraSettings",
    "apply_lora",
    "is_lora",
    "load_adapter",
    "merge_lora",
    "save_adapter",
]

# attention and MLP projections of Llama / Mistral / Qwen2 decoders
DECODER_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass
class LoraSettings:
    """LoRA hyper-parameters.

    Attributes:
        r: rank (NV-Embed: 16).
        alpha: scaling numerator (update = alpha / r * B A; NV-Embed: 32).
        dropout: dropout on the adapter input (NV-Embed: 0.1).
        target_modules: names of the Linear modules that get adapters.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: list(DECODER_TARGET_MODULES))

    def validate(self) -> list[str]:
        """All problems at once (empty = valid)."""
        errs = []
        if self.r < 1:
            errs.append(f"lora.r must be >= 1, got {self.r}")
        if self.alpha <= 0:
            errs.append(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            errs.append(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            errs.append("lora.target_modules is empty; name the Linear modules to adapt, e.g. q_proj, v_proj")
        return errs


def _peft():
    try:
        import peft
    except ImportError as e:  # pragma: no cover - peft is a core dependency
        raise MissingDependencyError("peft", "LoRA") from e
    return peft


def is_lora(model: nn.Module) -> TypeGuard[PeftModel]:
    """True if ``model`` is a peft-wrapped backbone."""
    return hasattr(model, "peft_config")


def apply_lora(backbone: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap ``backbone`` with LoRA adapters; its own weights are frozen.

    Raises:
        ConfigError: invalid settings, or a target module name matching nothing in the model.
    """
    from torch import nn

    errs = settings.validate()
    names = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in settings.target_modules if t not in names]
    if missing:
        errs.append(
            f"lora.target_modules {missing} match no Linear module of {type(backbone).__name__}; "
            f"choose from: {', '.join(sorted(names))}"
        )
    if errs:
        raise ConfigError("invalid LoRA settings:\n  " + "\n  ".join(errs))
    peft = _peft()
    cfg = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return peft.get_peft_model(backbone, cfg)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights and return the plain backbone (no-op if not LoRA)."""
    if is_lora(model):
        merged = model.merge_and_unload()
        for p in merged.parameters():
            p.requires_grad_(True)
        return merged
    return model


def save_adapter(model: nn.Module, directory: str | Path) -> None:
    """Write the adapters only (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    if is_lora(model):
        model.save_pretrained(str(directory), safe_serialization=True)
        return
    raise CheckpointError(
        f"cannot save LoRA adapters to {directory}: the backbone has no adapters; "
        "save the full model instead (adapter format needs a model trained with lora)"
    )


def load_adapter(backbone: nn.Module, directory: str | Path, trainable: bool = False) -> nn.Module:
    """Put saved adapters on ``backbone`` (a freshly loaded base model)."""
    d = Path(directory)
    if not (d / "adapter_config.json").is_file():
        raise CheckpointError(
            f"no LoRA adapter in {d}: adapter_config.json is missing; "
            "point to the 'adapter' folder written by save_pretrained(..., lora='adapter')"
        )
    peft = _peft()
    return peft.PeftModel.from_pretrained(backbone, str(d), is_trainable=trainable)
