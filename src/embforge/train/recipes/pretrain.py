"""Recipes ``retromae`` and ``mlm``: pretrain a masked-LM encoder on raw text (SPEC sections 1-3).

* ``retromae`` - RetroMAE with enhanced decoding (BGE-M3's first stage).
* ``mlm`` - masked language modelling (Arctic-Embed's first stage).

The model is a transformers masked-LM given by ``model.path`` (e.g.
``FacebookAI/xlm-roberta-large``, or the output of ``embforge pretrain build``)
or built from scratch from ``model.size`` + ``model.tokenizer``; its position
table can be extended first (``model.max_positions``, e.g. 8194 as M3 did).
The run writes ``final/`` (the encoder alone, an embforge ``Encoder`` with a
[CLS] dense head, ready for ``recipe: contrastive``) and ``final-mlm/`` (the
masked-LM with its head, for a further MLM/RetroMAE stage). Contrastive
pretraining is ``recipe: contrastive`` (configs/arctic-pretrain.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from embforge.config import LoopConfig, OptimConfig, ScheduleConfig, config_to_dict, register_recipe

__all__ = [
    "PretrainModelConfig",
    "PretrainDataConfig",
    "RetroMAEMaskConfig",
    "RetroMAERecipeConfig",
    "MLMRecipeConfig",
]


@dataclass
class PretrainModelConfig:
    """Which masked-LM to pretrain.

    Attributes:
        path: transformers masked-LM directory or hub id; null = build from scratch.
        size: named size for a model from scratch (xlmr-tiny, xlmr-mini, xlmr-small,
            xlmr-medium, xlmr-base, xlmr-large); used when ``path`` is null.
        tokenizer: tokenizer directory (needed from scratch: ``embforge pretrain tokenizer``);
            with ``path`` set, replaces the checkpoint's tokenizer.
        max_positions: grow the position table to this many rows first (8194 = 8192 XLM-R
            tokens); null = keep.
        position_init: new position rows: "copy" (tile the learned rows) or "random".
        dropout: from scratch only: hidden and attention dropout (null = 0.1).
        gradient_checkpointing: recompute activations in backward (less memory, slower).
        save_format: format of ``final/``: embforge | bge-m3 | sentence-transformers.
        device: "cpu", "cuda", "cuda:1", ...; null = the GPU when there is one, else cpu.
    """

    path: str | None = None
    size: str | None = None
    tokenizer: str | None = None
    max_positions: int | None = None
    position_init: Literal["copy", "random"] = "copy"
    dropout: float | None = None
    gradient_checkpointing: bool = False
    save_format: Literal["embforge", "bge-m3", "sentence-transformers"] = "embforge"
    device: str | None = None

    def validate(self) -> list[str]:
        from embforge.model.builders import XLMR_SIZES

        errs = []
        if self.path is None and (self.size is None or self.tokenizer is None):
            errs.append(
                "path: give a masked-LM path/hub id, or size + tokenizer to build a model from scratch "
                f"(sizes: {', '.join(XLMR_SIZES)})"
            )
        if self.size is not None and self.size not in XLMR_SIZES:
            errs.append(f"size: unknown model size {self.size!r}; choose from: {', '.join(XLMR_SIZES)}")
        if self.path is not None and self.size is not None:
            errs.append("size: only for models from scratch; remove it or set path to null")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            errs.append(f"dropout: must be in [0, 1), got {self.dropout}")
        return errs


@dataclass
class PretrainDataConfig:
    """Raw training text.

    Attributes:
        train_files: files or folders: .txt (a text a line), .jsonl ("text" field),
            SQuAD .json (contexts), KLUE .tsv (sentences).
        max_length: tokens per text (longer texts are truncated).
        questions: read the questions of SQuAD files instead of the contexts.
        max_texts: use at most this many texts (null = all).
        min_chars: skip texts shorter than this.
    """

    train_files: list[str]
    max_length: int = 512
    questions: bool = False
    max_texts: int | None = None
    min_chars: int = 1

    def validate(self) -> list[str]:
        errs = []
        if not self.train_files:
            errs.append("train_files: list at least one file or folder of raw text")
        if self.max_length < 3:
            errs.append(f"max_length: must be >= 3 tokens, got {self.max_length}")
        return errs


def _rate_errors(name: str, v: float, lo: float, hi: float) -> list[str]:
    return [] if lo <= v <= hi else [f"{name}: must be within [{lo}, {hi}], got {v}"]


@dataclass
class RetroMAEMaskConfig:
    """RetroMAE's two masks.

    Attributes:
        encoder_mask_rate: share of each text's tokens masked for the encoder (paper: 0.15-0.30).
        decoder_mask_rate: share of the context each decoder position does NOT see (paper: 0.5-0.7).
    """

    encoder_mask_rate: float = 0.3
    decoder_mask_rate: float = 0.5

    def validate(self) -> list[str]:
        return _rate_errors("encoder_mask_rate", self.encoder_mask_rate, 0.0, 0.95) + _rate_errors(
            "decoder_mask_rate", self.decoder_mask_rate, 0.0, 0.95
        )


@dataclass
class RetroMAERecipeConfig:
    """``recipe: retromae`` (see configs/retromae.yaml)."""

    data: PretrainDataConfig
    recipe: str = "retromae"
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    masking: RetroMAEMaskConfig = field(default_factory=RetroMAEMaskConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=7e-5))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_ratio=0.1))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(output_dir="runs/retromae"))


@dataclass
class MLMRecipeConfig:
    """``recipe: mlm`` (see configs/mlm.yaml).

    Attributes:
        mask_rate: share of each text's tokens to predict (BERT 0.15; 80% <mask>, 10% random, 10% kept).
    """

    data: PretrainDataConfig
    recipe: str = "mlm"
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    mask_rate: float = 0.15
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_ratio=0.06))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(output_dir="runs/mlm"))

    def validate(self) -> list[str]:
        return _rate_errors("mask_rate", self.mask_rate, 0.01, 0.95)


@register_recipe(
    "retromae", RetroMAERecipeConfig, "RetroMAE pretraining (enhanced decoding) of a masked-LM encoder"
)
def run_retromae(cfg: RetroMAERecipeConfig) -> Any:
    """Run RetroMAE pretraining; returns the Trainer's ``TrainResult``."""
    from embforge.pretrain.run import run_pretrain

    return run_pretrain(cfg, "retromae", config_to_dict(cfg))


@register_recipe("mlm", MLMRecipeConfig, "masked-language-model pretraining (Arctic-Embed stage 1)")
def run_mlm(cfg: MLMRecipeConfig) -> Any:
    """Run MLM pretraining; returns the Trainer's ``TrainResult``."""
    from embforge.pretrain.run import run_pretrain

    return run_pretrain(cfg, "mlm", config_to_dict(cfg))
