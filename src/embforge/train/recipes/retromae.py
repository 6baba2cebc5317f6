"""Recipe ``retromae``: RetroMAE pretraining of a masked-LM encoder on raw text.

Xiao et al. 2022, "RetroMAE: Pre-Training Retrieval-oriented Language Models Via
Masked Auto-Encoder", with enhanced decoding; BGE-M3's first stage (Chen et al.
2024). The model, data and run are shared with ``mlm`` (``embforge.train.masked_lm``);
see configs/retromae.yaml. Contrastive pretraining is ``recipe: contrastive``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from embforge.config import Recipe
from embforge.pretrain.collate import RetroMAECollator
from embforge.pretrain.retromae import RetroMAE
from embforge.train.loop import Callback, TrainResult
from embforge.train.masked_lm import PretrainDataConfig, PretrainModelConfig, fit_masked_lm, rate_errors
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig

__all__ = ["RetroMAEMaskConfig", "RetroMAERecipeConfig", "RECIPE", "run"]


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
        return rate_errors("encoder_mask_rate", self.encoder_mask_rate, 0.0, 0.95) + rate_errors(
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


def run(cfg: RetroMAERecipeConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Run RetroMAE pretraining; the encoder goes to ``<loop.output_dir>/final``."""

    def build(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[nn.Module, Callable]:
        model = RetroMAE(lm)  # first: its decoder draws from the seeded RNG
        collate = RetroMAECollator(
            tokenizer,
            cfg.data.max_length,
            cfg.masking.encoder_mask_rate,
            cfg.masking.decoder_mask_rate,
            seed=cfg.loop.seed,
        )
        return model, collate

    return fit_masked_lm(cfg, "retromae", build, callbacks)


RECIPE = Recipe(
    "retromae", RetroMAERecipeConfig, run, "RetroMAE pretraining (enhanced decoding) of a masked-LM encoder"
)
