"""The ``retromae`` and ``mlm`` recipes' run: texts -> masked-LM -> batches -> Trainer -> encoder.

Inputs (config, files, model, tokenizer, lengths) are all checked before the
first step. The loop itself (AdamW, schedule, bf16, clipping, JSONL log,
checkpoints, exact resume) is the shared :class:`embforge.train.loop.Trainer`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from embforge.errors import ConfigError
from embforge.types import LossOutput

__all__ = ["load_masked_lm", "run_pretrain"]


def load_masked_lm(model_cfg, max_length: int, seed: int = 0):
    """(masked-LM, tokenizer) from ``PretrainModelConfig``: a checkpoint, or a named size from scratch."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from embforge.model.builders import build_masked_lm
    from embforge.pretrain.positions import extend_positions

    tok_src = model_cfg.tokenizer or model_cfg.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"model.tokenizer: cannot load a tokenizer from {tok_src!r} ({str(e).splitlines()[0][:200]}); "
            "train one with `embforge pretrain tokenizer` or point to a model directory"
        ) from None
    if model_cfg.path is None:
        drop = (
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
    from embforge.pretrain.mlm_parts import backbone_of, position_offset

    limit = int(getattr(lm.config, "max_position_embeddings", 10**9)) - position_offset(backbone_of(lm))
    if max_length > limit:
        raise ConfigError(
            f"data.max_length={max_length} exceeds the model's {limit} positions; lower it or set "
            f"model.max_positions to at least {max_length + position_offset(backbone_of(lm))}"
        )
    tokenizer.model_max_length = limit
    if model_cfg.gradient_checkpointing:
        from embforge.train.contrastive import enable_checkpointing

        enable_checkpointing(lm)
    return lm, tokenizer


def _total_steps(loop, per_epoch: int) -> int:
    if loop.max_steps is not None:
        return int(loop.max_steps)
    return max(1, math.ceil(loop.epochs * per_epoch))


def run_pretrain(cfg, kind: str, config_dict: dict[str, Any] | None = None):
    """Run recipe ``kind`` ("retromae" or "mlm") with its config; returns ``TrainResult``."""
    from embforge.pretrain.batches import TextBatches
    from embforge.pretrain.collate import MLMCollator, RetroMAECollator
    from embforge.pretrain.corpus import read_texts
    from embforge.pretrain.mlm import MaskedLM
    from embforge.pretrain.retromae import RetroMAE
    from embforge.train import distributed as du
    from embforge.train.contrastive import pick_device, seed_everything
    from embforge.train.loop import Trainer

    du.init_from_env()
    seed_everything(cfg.loop.seed)
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    if du.world_size() > 1:
        raise ConfigError(
            f"recipe {kind} runs in one process (got {du.world_size()}); run it without torchrun"
        )
    texts = read_texts(
        *cfg.data.train_files,
        questions=cfg.data.questions,
        limit=cfg.data.max_texts,
        min_chars=cfg.data.min_chars,
    )
    lm, tokenizer = load_masked_lm(cfg.model, cfg.data.max_length, cfg.loop.seed)
    if kind == "retromae":
        model = RetroMAE(lm)
        collate = RetroMAECollator(
            tokenizer,
            cfg.data.max_length,
            cfg.masking.encoder_mask_rate,
            cfg.masking.decoder_mask_rate,
            seed=cfg.loop.seed,
        )
    else:
        model = MaskedLM(lm)
        collate = MLMCollator(tokenizer, cfg.data.max_length, cfg.mask_rate, seed=cfg.loop.seed)
    batches = TextBatches(texts, cfg.loop.batch_size, collate, seed=cfg.loop.seed)
    device = pick_device(cfg.model.device)
    model.to(device)

    def step_fn(batch, step: int) -> LossOutput:
        out = model(batch.to(device))
        out.total.backward()
        return LossOutput(out.total.detach(), out.parts)

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
        _total_steps(cfg.loop, len(batches)),
        items_per_step=cfg.loop.batch_size,
        save_model=save_final,
        config=config_dict,
    )
    return trainer.fit()
