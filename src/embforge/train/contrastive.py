"""The contrastive recipe's run: data -> sampler -> Encoder -> (cached) step -> Trainer.

Everything that can be wrong with the inputs (config, files, negative counts,
sources smaller than a batch) is checked before the first step.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embforge.data.samplers import SourceBatchSampler
from embforge.errors import ConfigError
from embforge.losses.cached import cached_step, plain_step
from embforge.text import collate, tokenize_texts
from embforge.train import distributed as du
from embforge.train.data import check_examples, group_texts, read_examples, sources_of
from embforge.train.loop import Trainer, TrainResult
from embforge.train.recipes.contrastive import ContrastiveConfig, total_steps
from embforge.types import Batch

__all__ = ["run_contrastive", "seed_everything", "Tokenize", "enable_checkpointing", "pick_device"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Tokenize:
    """Texts -> ``Batch`` with the encoder's role prefixes; truncation is counted, not warned."""

    def __init__(self, encoder) -> None:
        self.enc = encoder
        self.truncated = 0

    def __call__(self, texts: list[str], role: str, max_length: int) -> Batch:
        pre = self.enc.prefix(role)
        tok = tokenize_texts(self.enc.tokenizer, [pre + t for t in texts], max_length)
        self.truncated += len(tok.truncated)
        return collate(tok.ids, self.enc.pad_id, getattr(self.enc.tokenizer, "padding_side", "right"))

    def lengths(self, texts: list[str], max_length: int) -> list[int]:
        ids = self.enc.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=max_length, verbose=False
        )["input_ids"]
        return [len(x) for x in ids]


def _load_encoder(cfg: ContrastiveConfig):
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(cfg.model.path, heads=cfg.model.heads).to(pick_device(cfg.model.device))
    missing = [h for h in cfg.model.heads if h not in enc.heads]
    if missing:
        raise ConfigError(
            f"model.heads: the encoder at {cfg.model.path or 'the bundled model'} has no "
            f"{missing} head; it has {list(enc.heads)}"
        )
    if cfg.model.pooling is not None and cfg.model.pooling != enc.config.pooling:
        from embforge.model.pooling import build_pooling

        enc.config.pooling = cfg.model.pooling
        enc.dense_head.pooling = build_pooling(cfg.model.pooling, enc.hidden_size)
    if cfg.model.gradient_checkpointing:
        enable_checkpointing(enc.backbone)
    return enc


def pick_device(device: str | None) -> torch.device:
    """``device`` or the local GPU (``cuda:LOCAL_RANK`` under torchrun) when there is one, else cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def enable_checkpointing(backbone) -> None:
    """Activation (gradient) checkpointing on an HF backbone, transformers 4.x and 5.x spellings."""
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(backbone, "gradient_checkpointing_enable"):
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ConfigError("model.gradient_checkpointing: this backbone does not support it; set it false")


def _check_lengths(cfg: ContrastiveConfig, limit: int) -> None:
    """Token limits above the model's position limit fail here, before any step (not mid-run)."""
    bad = [
        f"data.{k} = {getattr(cfg.data, k)} exceeds the model's limit of {limit} tokens"
        for k in ("query_max_length", "doc_max_length")
        if getattr(cfg.data, k) > limit
    ]
    if bad:
        raise ConfigError(
            "; ".join(bad)
            + f"; set it to at most {limit} (e.g. data.doc_max_length={limit}) or extend the model's "
            "positions first with `embforge pretrain extend-positions`"
        )


def run_contrastive(cfg: ContrastiveConfig, config_dict: dict[str, Any] | None = None) -> TrainResult:
    """Run the ``contrastive`` recipe (see ``embforge.train.recipes.contrastive``)."""
    du.init_from_env()
    seed_everything(cfg.loop.seed)
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    world = du.world_size()
    if cfg.loop.batch_size % world:
        raise ConfigError(
            f"loop.batch_size {cfg.loop.batch_size} does not split over {world} processes; "
            f"use a multiple of {world}"
        )
    # --- data, checked before any step
    examples = read_examples(cfg.data.train_files)
    n_neg = cfg.data.num_negatives
    need_teacher = cfg.loss.name == "distill"
    check_examples(examples, n_neg, need_teacher)
    enc = _load_encoder(cfg)
    _check_lengths(cfg, enc.model_limit)
    tok = Tokenize(enc)
    lengths = (
        tok.lengths([e.pos[0] for e in examples], cfg.data.doc_max_length)
        if cfg.data.group_by_length
        else None
    )
    sampler = SourceBatchSampler(
        sources_of(examples),
        cfg.loop.batch_size,
        lengths=lengths,
        seed=cfg.loop.seed,
        one_source_per_batch=cfg.data.one_source_per_batch,
    )
    loss = cfg.loss.build(list(cfg.model.heads))
    warm = cfg.loss.self_distill_start_step if cfg.loss.name == "m3" else 0
    warm_loss = cfg.loss.build(list(cfg.model.heads), step=0) if warm else loss
    heads = tuple(cfg.model.heads)
    group = 1 + n_neg
    unsup = cfg.loss.name == "simcse_unsup"
    device = enc.device

    def encode(b: Batch):
        return enc(b.to(device), heads=heads)

    def step_fn(global_idx: np.ndarray, step: int):
        idx = global_idx[du.local_rows(len(global_idx))]
        queries, docs, teacher = group_texts(examples, idx, n_neg, cfg.loop.seed, step, need_teacher)
        if unsup:
            docs = list(queries)  # SimCSE: the same text twice, two dropout masks
        qb = tok(queries, "query", cfg.data.query_max_length)
        db = tok(docs, "document", cfg.data.doc_max_length)
        t = None if teacher is None else du.gather_with_grad(torch.tensor(teacher, device=device))

        step_loss = warm_loss if step <= warm else loss

        def loss_fn(q, d):
            return step_loss(du.gather_output(q), du.gather_output(d), group_size=group, teacher_scores=t)

        if cfg.loop.sub_batch_size:
            return cached_step(encode, qb, db, loss_fn, cfg.loop.sub_batch_size)
        return plain_step(encode, qb, db, loss_fn)

    def save_final(path: Path) -> None:
        enc.save_pretrained(str(path))

    steps = total_steps(cfg.loop, len(sampler))
    trainer = Trainer(
        enc,
        step_fn,
        sampler,
        cfg.loop,
        cfg.optim,
        cfg.schedule,
        steps,
        items_per_step=cfg.loop.batch_size,
        save_model=save_final,
        config=config_dict,
    )
    return trainer.fit()
