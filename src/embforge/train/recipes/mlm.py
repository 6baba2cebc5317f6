"""Recipe ``mlm``: masked-language-model pretraining of an encoder on raw text.

Devlin et al. 2019, "BERT" (80% <mask>, 10% random, 10% kept); Arctic-Embed's first
stage (Merrick et al. 2024). The model, data and run are shared with ``retromae``
(``embforge.train.masked_lm``); see configs/mlm.yaml.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from embforge.config import Recipe
from embforge.pretrain.collate import MLMCollator
from embforge.pretrain.mlm import MaskedLM
from embforge.train.loop import Callback, TrainResult
from embforge.train.masked_lm import PretrainDataConfig, PretrainModelConfig, fit_masked_lm, rate_errors
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig

__all__ = ["MLMRecipeConfig", "RECIPE", "run"]


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
        return rate_errors("mask_rate", self.mask_rate, 0.01, 0.95)


def run(cfg: MLMRecipeConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Run MLM pretraining; the encoder goes to ``<loop.output_dir>/final``."""

    def build(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[nn.Module, Callable]:
        return MaskedLM(lm), MLMCollator(tokenizer, cfg.data.max_length, cfg.mask_rate, seed=cfg.loop.seed)

    return fit_masked_lm(cfg, "mlm", build, callbacks)


RECIPE = Recipe("mlm", MLMRecipeConfig, run, "masked-language-model pretraining (Arctic-Embed stage 1)")
