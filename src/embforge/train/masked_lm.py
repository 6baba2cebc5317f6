"""What the masked-LM pretraining recipes (``retromae``, ``mlm``) share: model and data
sections of their configs, loading the masked-LM, and the run on the shared Trainer.

The model is a transformers masked-LM given by ``model.path`` (e.g.
``FacebookAI/xlm-roberta-large``, or the output of ``embforge pretrain build``)
or built from scratch from ``model.size`` + ``model.tokenizer``; its position
table can be extended first (``model.max_positions``, e.g. 8194 as M3 did).
A run writes ``final/`` (the encoder alone, an embforge ``Encoder`` with a
[CLS] dense head, ready for ``recipe: contrastive``) and ``final-mlm/`` (the
masked-LM with its head, for a further MLM/RetroMAE stage).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from embforge.config import Choice, config_to_dict
from embforge.errors import ConfigError
from embforge.model.builders import XLMR_SIZES, build_masked_lm
from embforge.model.checkpoint import FORMATS
from embforge.pretrain.batches import TextBatches
from embforge.pretrain.corpus import read_texts
from embforge.pretrain.mlm_parts import backbone_of, position_offset
from embforge.pretrain.positions import POSITION_INITS, extend_positions
from embforge.train import distributed as du
from embforge.train.loop import Callback, Trainer, TrainResult
from embforge.train.runtime import enable_checkpointing, pick_device, seed_everything, total_steps
from embforge.train.step import forward_backward

__all__ = [
    "PretrainModelConfig",
    "PretrainDataConfig",
    "rate_errors",
    "load_masked_lm",
    "fit_masked_lm",
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
        position_init: new position rows, a name of ``POSITION_INITS``: "copy" (tile the learned
            rows) or "random".
        dropout: from scratch only: hidden and attention dropout (null = 0.1).
        gradient_checkpointing: recompute activations in backward (less memory, slower).
        save_format: format of ``final/``: embforge | bge-m3 | sentence-transformers.
        device: "cpu", "cuda", "cuda:1", ...; null = the GPU when there is one, else cpu.
    """

    path: str | None = None
    size: str | None = None
    tokenizer: str | None = None
    max_positions: int | None = None
    position_init: Annotated[str, Choice(POSITION_INITS)] = "copy"
    dropout: float | None = None
    gradient_checkpointing: bool = False
    save_format: Annotated[str, Choice(FORMATS)] = "embforge"
    device: str | None = None

    def validate(self) -> list[str]:
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


def rate_errors(name: str, v: float, lo: float, hi: float) -> list[str]:
    return [] if lo <= v <= hi else [f"{name}: must be within [{lo}, {hi}], got {v}"]


def load_masked_lm(
    model_cfg: PretrainModelConfig, max_length: int, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(masked-LM, tokenizer) from ``PretrainModelConfig``: a checkpoint, or a named size from scratch."""
    tok_src = model_cfg.tokenizer or model_cfg.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"model.tokenizer: cannot load a tokenizer from {tok_src!r} ({str(e).splitlines()[0][:200]}); "
            "train one with `embforge pretrain tokenizer` or point to a model directory"
        ) from None
    if model_cfg.path is None:
        if model_cfg.size is None:  # PretrainModelConfig.validate asks for size + tokenizer without a path
            raise ConfigError(f"model.size: give one of {', '.join(XLMR_SIZES)} (or a model path)")
        drop: dict[str, Any] = (
            {}
            if model_cfg.dropout is None
            else {"hidden_dropout_prob": model_cfg.dropout, "attention_probs_dropout_prob": model_cfg.dropout}
        )
        lm = build_masked_lm(model_cfg.size, tokenizer, max_length=max_length, seed=seed, **drop)
    else:
        try:
            lm = AutoModelForMaskedLM.from_pretrained(str(model_cfg.path), dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"model.path: cannot load a masked-LM from {model_cfg.path!r} ({str(e).splitlines()[0][:200]}); "
                "give a transformers checkpoint with an MLM head (e.g. FacebookAI/xlm-roberta-large)"
            ) from None
        if len(tokenizer) > lm.config.vocab_size:
            raise ConfigError(
                f"model.tokenizer: {len(tokenizer)} tokens but the model's vocabulary has {lm.config.vocab_size}; "
                "use the model's own tokenizer or build a model from scratch for this one"
            )
    if model_cfg.max_positions:
        extend_positions(lm, model_cfg.max_positions, init=model_cfg.position_init, tokenizer=tokenizer)
    limit = int(getattr(lm.config, "max_position_embeddings", 10**9)) - position_offset(backbone_of(lm))
    if max_length > limit:
        raise ConfigError(
            f"data.max_length={max_length} exceeds the model's {limit} positions; lower it or set "
            f"model.max_positions to at least {max_length + position_offset(backbone_of(lm))}"
        )
    tokenizer.model_max_length = limit
    if model_cfg.gradient_checkpointing:
        enable_checkpointing(lm)
    return lm, tokenizer


@runtime_checkable
class SavesEncoder(Protocol):
    """A pretraining model that can write its encoder alone (``MaskedLM``, ``RetroMAE``)."""

    def save_encoder(self, path: str | Path, tokenizer: Any, format: str = "embforge") -> Path: ...


def fit_masked_lm(
    cfg: Any,
    name: str,
    build: Callable[[PreTrainedModel, PreTrainedTokenizerBase], tuple[torch.nn.Module, Callable]],
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """The run of a masked-LM recipe: texts -> masked-LM -> ``build`` -> Trainer -> encoder.

    Args:
        cfg: the recipe's config (``data: PretrainDataConfig``, ``model: PretrainModelConfig``,
            ``optim``, ``schedule``, ``loop``).
        name: the recipe's name (for errors).
        build: ``(masked_lm, tokenizer) -> (model returning a LossOutput, batch collator)``.
        callbacks: passed to the ``Trainer``.
    """
    du.init_from_env()
    seed_everything(cfg.loop.seed)
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    if du.world_size() > 1:
        raise ConfigError(
            f"recipe {name} runs in one process (got {du.world_size()}); run it without torchrun"
        )
    texts = read_texts(
        *cfg.data.train_files,
        questions=cfg.data.questions,
        limit=cfg.data.max_texts,
        min_chars=cfg.data.min_chars,
    )
    lm, tokenizer = load_masked_lm(cfg.model, cfg.data.max_length, cfg.loop.seed)
    model, collate = build(lm, tokenizer)
    if not isinstance(model, SavesEncoder):
        raise TypeError(
            f"recipe {name}: build() returned a {type(model).__name__} without "
            "save_encoder(path, tokenizer, format); return a MaskedLM or RetroMAE model"
        )
    batches = TextBatches(texts, cfg.loop.batch_size, collate, seed=cfg.loop.seed)
    device = pick_device(cfg.model.device)
    model.to(device)

    def step_fn(batch: Any, step: int):
        return forward_backward(model, batch.to(device))

    def save_final(path: Path) -> None:
        model.cpu()
        model.save_encoder(path, tokenizer, format=cfg.model.save_format)
        mlm_dir = path.parent / "final-mlm"
        lm.save_pretrained(str(mlm_dir))
        tokenizer.save_pretrained(str(mlm_dir))

    trainer = Trainer(
        model,
        step_fn,
        batches,
        cfg.loop,
        cfg.optim,
        cfg.schedule,
        total_steps(cfg.loop, len(batches)),
        items_per_step=cfg.loop.batch_size,
        save_model=save_final,
        config=config_to_dict(cfg),
        callbacks=callbacks,
    )
    return trainer.fit()
