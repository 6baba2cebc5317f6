"""Recipe ``contrastive``: fine-tune or contrastively pretrain an Encoder.

One recipe covers M3 unified fine-tuning (``loss.name: m3``), Arctic-Embed
pretraining / fine-tuning (``infonce`` + Matryoshka), SimCSE (``simcse_unsup``,
``simcse_sup``) and distillation from teacher scores (``distill``): they differ
in data, loss and schedule only. See ``configs/*.yaml``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from embforge.config import Choice, Recipe, config_to_dict
from embforge.data.samplers import SourceBatchSampler
from embforge.errors import ConfigError
from embforge.losses import LOSSES, ContrastiveLoss, build_loss
from embforge.model.encoder import Encoder
from embforge.model.heads.sparse import SparseHead, init_sparse_head
from embforge.model.pooling import build_pooling
from embforge.scoring import M3_SCORE_WEIGHTS
from embforge.train import distributed as du
from embforge.train.data import TrainExample, check_examples, group_texts, read_examples, sources_of
from embforge.train.loop import Callback, Trainer, TrainResult
from embforge.train.memory import encoder_probe, measure_sub_batch_cost, plan_for_backbone, plan_measured
from embforge.train.precision import resolve_precision
from embforge.train.runtime import Tokenize, enable_checkpointing, pick_device, seed_everything, total_steps
from embforge.train.settings import LoopConfig, ModelConfig, OptimConfig, ScheduleConfig
from embforge.train.step import contrastive_step, gathered_loss
from embforge.types import Batch, LossOutput

logger = logging.getLogger("embforge")

__all__ = ["DataConfig", "LossConfig", "ContrastiveConfig", "RECIPE", "run", "total_steps"]


@dataclass
class DataConfig:
    """Training data.

    Attributes:
        train_files: JSONL / JSONL.gz / parquet records (pair, triple, example with
            ``neg`` and teacher ``pos_scores``/``neg_scores``) or ``.txt`` (one sentence a line).
        num_negatives: hard negatives per query (N; each example must have at least N).
        query_max_length: token limit for queries.
        doc_max_length: token limit for documents.
        group_by_length: batch texts of similar length together (less padding).
        one_source_per_batch: draw every batch from one source (file / ``source`` field, per ``lang``).
        length_buckets: upper bounds (tokens of the positive) of length buckets with their own
            batch sizes, as BGE M3-Embedding trains (e.g. ``[128, 512, 2048, 8192]``):
            ``loop.batch_size`` is the batch of the first bucket, a bucket with bound ``L`` gets
            about ``batch_size * L_0 / L`` (``embforge.data.samplers.bucket_batch_sizes``), so every
            step holds about the same number of tokens. Empty = one batch size.
    """

    train_files: list[str]
    num_negatives: int = 0
    query_max_length: int = 64
    doc_max_length: int = 256
    group_by_length: bool = True
    one_source_per_batch: bool = True
    length_buckets: list[int] = field(default_factory=list)

    def validate(self) -> list[str]:
        errs = []
        b = self.length_buckets
        if b and (any(x < 1 for x in b) or b != sorted(set(b))):
            errs.append(f"length_buckets: must be increasing positive token counts, got {b}")
        if self.num_negatives < 0:
            errs.append(f"num_negatives: must be >= 0, got {self.num_negatives}")
        for k in ("query_max_length", "doc_max_length"):
            if getattr(self, k) < 2:
                errs.append(f"{k}: must be >= 2 tokens, got {getattr(self, k)}")
        return errs


@dataclass
class LossConfig:
    """The loss (see ``embforge.losses``).

    Attributes:
        name: a loss of ``embforge.losses.LOSSES``: infonce | m3 | simcse_unsup | simcse_sup | distill.
        temperature: tau; None = the loss's paper default (0.02, SimCSE 0.05).
        in_batch_negatives: False = own positive + own hard negatives only (NV-Embed stage 2).
        head_weights: infonce: weight per head.
        matryoshka_dims: infonce and m3: extra truncation dims of the dense head (Arctic: [256]).
        matryoshka_weights: one weight per matryoshka dim (default 1 each).
        score_weights: m3: w1, w2, w3 of the teacher score.
        loss_weights: m3: l1, l2, l3 of the per-head losses.
        weighted: m3: False = the unweighted variant.
        self_distill_start_step: m3: steps before self-distillation joins (only ``L`` until then).
        teacher_temperature: distill: tau of the teacher scores.
        infonce_weight: distill: weight of an added InfoNCE term.
    """

    name: Annotated[str, Choice(LOSSES)] = "infonce"
    temperature: float | None = None
    in_batch_negatives: bool = True
    head_weights: dict[str, float] = field(default_factory=dict)
    matryoshka_dims: list[int] = field(default_factory=list)
    matryoshka_weights: list[float] | None = None
    score_weights: list[float] = field(default_factory=lambda: list(M3_SCORE_WEIGHTS))
    loss_weights: list[float] = field(default_factory=lambda: [1.0, 0.1, 1.0])
    weighted: bool = True
    self_distill_start_step: int = 0
    teacher_temperature: float = 1.0
    infonce_weight: float = 0.0

    def validate(self) -> list[str]:
        errs = []
        if self.self_distill_start_step < 0:
            errs.append(f"self_distill_start_step: must be >= 0, got {self.self_distill_start_step}")
        if self.temperature is not None and self.temperature <= 0:
            errs.append(f"temperature: must be > 0, got {self.temperature}")
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dims):
            errs.append(
                f"matryoshka_weights: {len(self.matryoshka_weights)} weights for "
                f"{len(self.matryoshka_dims)} matryoshka_dims; give one per dim"
            )
        for k in ("score_weights", "loss_weights"):
            if len(getattr(self, k)) != 3:
                errs.append(f"{k}: needs 3 values (dense, sparse, multivector), got {getattr(self, k)}")
        return errs

    def build(self, heads: Sequence[str], step: int | None = None) -> ContrastiveLoss:
        """The loss object; for m3, ``step <= self_distill_start_step`` gives the loss without L'.

        Every setting goes to the loss's registered builder, which keeps the ones it uses.
        """
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        distill = step is None or step > self.self_distill_start_step
        return build_loss(self.name, heads=list(heads), distill=distill, **settings)


@dataclass
class ContrastiveConfig:
    """``recipe: contrastive`` (see the module doc and configs/)."""

    data: DataConfig
    recipe: str = "contrastive"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> list[str]:
        errs = []
        heads = self.model.heads
        if self.loss.name == "m3" and sorted(heads) != ["dense", "multivector", "sparse"]:
            errs.append(
                f"model.heads: the m3 loss trains all three heads; set model.heads to "
                f"[dense, sparse, multivector] (got {heads})"
            )
        if self.loss.name.startswith("simcse") and heads != ["dense"]:
            errs.append(
                f"model.heads: SimCSE trains the dense head only; set model.heads to [dense] (got {heads})"
            )
        need = {"simcse_sup": 1, "simcse_unsup": 0}.get(self.loss.name)
        if need is not None and self.data.num_negatives != need:
            errs.append(
                f"data.num_negatives: {self.loss.name} needs {need} negative(s) per query "
                f"(got {self.data.num_negatives})"
            )
        if self.loss.matryoshka_dims and "dense" not in heads:
            errs.append(
                "loss.matryoshka_dims: Matryoshka applies to the dense head; add dense to model.heads"
            )
        if not self.loss.in_batch_negatives and self.data.num_negatives == 0:
            errs.append(
                "loss.in_batch_negatives: with in-batch negatives off every query needs hard "
                "negatives; set data.num_negatives >= 1"
            )
        return errs


# ----------------------------------------------------------------------------- run


def _load_encoder(cfg: ContrastiveConfig) -> Encoder:
    enc = Encoder.from_pretrained(cfg.model.path, heads=cfg.model.heads).to(pick_device(cfg.model.device))
    missing = [h for h in cfg.model.heads if h not in enc.heads]
    if missing:
        raise ConfigError(
            f"model.heads: the encoder at {cfg.model.path or 'the bundled model'} has no "
            f"{missing} head; it has {list(enc.heads)}"
        )
    if cfg.model.pooling is not None and cfg.model.pooling != enc.config.pooling:
        enc.config.pooling = cfg.model.pooling
        enc.dense_head.pooling = build_pooling(cfg.model.pooling, enc.hidden_size)
    agg, head = cfg.model.sparse_aggregation, enc.sparse_head
    if agg is not None and isinstance(head, SparseHead) and agg != head.aggregation:
        enc.config.sparse_aggregation = head.aggregation = agg
    if cfg.model.gradient_checkpointing:
        enable_checkpointing(enc.backbone)
    return enc


def _init_sparse(cfg: ContrastiveConfig, enc: Encoder, examples: list[TrainExample]) -> None:
    """``model.sparse_init`` for a sparse head the checkpoint had no weights for (trained ones are kept).

    ``idf`` takes its IDF from the training documents (positives and negatives).
    """
    head = enc.sparse_head
    if head is None or not getattr(head, "untrained", False):
        return
    how = cfg.model.sparse_init
    docs = [t for e in examples for t in (*e.pos, *e.neg)] if how == "idf" else None
    did = init_sparse_head(enc, how, docs, max_length=min(128, cfg.data.doc_max_length))
    print(f"model.sparse_init={how}: {did}", file=sys.stderr)


def _set_sparse_avg_length(cfg: ContrastiveConfig, enc: Encoder, examples: list[TrainExample]) -> None:
    """``max_tf`` without a reference length: the training documents' mean kept-token count (BM25's
    avgdl, cut at ``data.doc_max_length``), stored in the model's config so it travels with it."""
    head = enc.sparse_head
    if not isinstance(head, SparseHead) or head.aggregation != "max_tf" or head.avg_length:
        return
    docs = list(dict.fromkeys(t for e in examples for t in (*e.pos, *e.neg)))
    docs = docs[:: max(1, len(docs) // 2000)][:2000]  # evenly spaced, bounded cost
    if not docs:
        return
    special = torch.tensor(sorted(set(enc.tokenizer.all_special_ids)), dtype=torch.long)
    kept = 0
    for i in range(0, len(docs), 256):
        b = enc.tokenize(docs[i : i + 256], role="document", max_length=cfg.data.doc_max_length)
        kept += int((b.attention_mask.bool() & ~torch.isin(b.input_ids, special)).sum())
    enc.config.sparse_avg_length = head.avg_length = round(kept / len(docs), 2)
    print(
        f"model.sparse_aggregation=max_tf: reference length {head.avg_length} tokens "
        f"(mean of {len(docs)} training documents)",
        file=sys.stderr,
    )


def _clip_lengths(cfg: ContrastiveConfig, limit: int) -> None:
    """Token limits above the model's position limit are clipped to it, with one warning before
    any step (a recipe written for BGE-M3's 8192 tokens runs on a 512-token model as is)."""
    over = {
        k: getattr(cfg.data, k)
        for k in ("query_max_length", "doc_max_length")
        if getattr(cfg.data, k) > limit
    }
    if not over:
        return
    for k in over:
        setattr(cfg.data, k, limit)
    said = ", ".join(f"data.{k} = {v}" for k, v in over.items())
    logger.warning(
        "%s above the model's limit of %d tokens: clipped to %d (set it to at most %d to silence this, "
        "or extend the model's positions first with `embforge pretrain extend-positions`)",
        said,
        limit,
        limit,
        limit,
    )


def _check_world(cfg: ContrastiveConfig) -> None:
    world = du.world_size()
    if cfg.loop.batch_size % world:
        raise ConfigError(
            f"loop.batch_size {cfg.loop.batch_size} does not split over {world} processes; "
            f"use a multiple of {world}"
        )


def _sampler(cfg: ContrastiveConfig, examples: list[TrainExample], tok: Tokenize) -> SourceBatchSampler:
    buckets = cfg.data.length_buckets or None
    lengths = (
        tok.lengths([e.pos[0] for e in examples], cfg.data.doc_max_length)
        if cfg.data.group_by_length or buckets
        else None
    )
    sampler = SourceBatchSampler(
        sources_of(examples),
        cfg.loop.batch_size,
        lengths=lengths,
        seed=cfg.loop.seed,
        one_source_per_batch=cfg.data.one_source_per_batch,
        buckets=buckets,
        multiple=du.world_size(),
    )
    if buckets and du.rank() == 0:
        table = ", ".join(
            f"{name}: {len(sampler.sources[name])} records x batch {bs}"
            for name, bs in sampler.group_batch_sizes().items()
        )
        print(f"data.length_buckets {buckets}: {table}", file=sys.stderr)
    return sampler


@dataclass
class ContrastiveStep:
    """One optimisation step of the contrastive recipe: texts -> batches -> (cached) step.

    Called by the ``Trainer`` with the global row indices of one batch; this process
    takes its share of the rows, the loss sees every process's rows (``gathered_loss``).
    """

    cfg: ContrastiveConfig
    enc: Encoder
    examples: list[TrainExample]
    tok: Tokenize
    sub_batch_tokens: int | None = None  # from the memory plan (loop.memory_budget_gib)

    def __post_init__(self) -> None:
        heads = list(self.cfg.model.heads)
        self.loss = self.cfg.loss.build(heads)
        loss_cfg = self.cfg.loss
        self.warm = loss_cfg.self_distill_start_step if loss_cfg.name == "m3" else 0
        self.warm_loss = loss_cfg.build(heads, step=0) if self.warm else self.loss
        self.heads = tuple(heads)
        self.group = 1 + self.cfg.data.num_negatives
        self.need_teacher = loss_cfg.name == "distill"

    def encode(self, b: Batch):
        return self.enc(b.to(self.enc.device), heads=self.heads)

    def __call__(self, global_idx: np.ndarray, step: int) -> LossOutput:
        cfg, data = self.cfg, self.cfg.data
        idx = global_idx[du.local_rows(len(global_idx))]
        queries, docs, teacher = group_texts(
            self.examples, idx, data.num_negatives, cfg.loop.seed, step, self.need_teacher
        )
        if cfg.loss.name == "simcse_unsup":
            docs = list(queries)  # SimCSE: the same text twice, two dropout masks
        qb = self.tok(queries, "query", data.query_max_length)
        db = self.tok(docs, "document", data.doc_max_length)
        t = None if teacher is None else du.gather_with_grad(torch.tensor(teacher, device=self.enc.device))
        loss = self.warm_loss if step <= self.warm else self.loss
        out = contrastive_step(
            self.encode,
            qb,
            db,
            gathered_loss(loss, self.group, t),
            cfg.loop.sub_batch_size,
            self.sub_batch_tokens,
        )
        if cfg.loss.name == "m3":
            self._log_schedule(out, step)
        if data.length_buckets:  # the batch size varies with the length bucket: log it
            out.parts["batch_size"] = torch.tensor(float(len(global_idx)))
        return out

    def _log_schedule(self, out: LossOutput, step: int) -> None:
        """M3: log field ``self_distill`` (0 during the per-head warm-up, 1 after) and the switch."""
        distill = step > self.warm
        out.parts["self_distill"] = torch.tensor(float(distill))
        if self.warm and du.rank() == 0 and step in (1, self.warm + 1):
            what = (
                "self-distillation (L + L')"
                if distill
                else f"warm-up: InfoNCE only (L) until step {self.warm}"
            )
            print(f"step {step}: m3 {what}", file=sys.stderr)


def plan_memory(cfg: ContrastiveConfig, enc: Encoder) -> int | None:
    """Tokens per GradCache sub-batch that fit ``loop.memory_budget_gib`` (None: no budget set)."""
    if cfg.loop.memory_budget_gib is None:
        return None
    length = max(cfg.data.query_max_length, cfg.data.doc_max_length)
    precision = resolve_precision(cfg.loop.precision, enc.device).precision
    measured = measure_sub_batch_cost(encoder_probe(enc, tuple(cfg.model.heads), length, precision))
    n_params = sum(p.numel() for p in enc.parameters())
    plan = plan_measured(n_params, *measured, length, cfg.loop.memory_budget_gib) if measured else None
    if plan is None:
        plan = plan_for_backbone(
            enc.backbone, length, cfg.loop.memory_budget_gib, precision, cfg.model.gradient_checkpointing
        )
    if du.rank() == 0:
        print(plan.log_line(), file=sys.stderr)
    return plan.tokens_per_sub_batch


def run(cfg: ContrastiveConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data``; everything about the inputs is checked before step 1."""
    du.init_from_env()
    seed_everything(cfg.loop.seed)
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    _check_world(cfg)
    examples = read_examples(cfg.data.train_files)
    check_examples(examples, cfg.data.num_negatives, cfg.loss.name == "distill")
    enc = _load_encoder(cfg)
    _clip_lengths(cfg, enc.model_limit)
    _init_sparse(cfg, enc, examples)
    _set_sparse_avg_length(cfg, enc, examples)
    tok = Tokenize(enc)
    sampler = _sampler(cfg, examples, tok)

    def save_final(path: Path) -> None:
        enc.save_pretrained(str(path))

    trainer = Trainer(
        enc,
        ContrastiveStep(cfg, enc, examples, tok, plan_memory(cfg, enc)),
        sampler,
        cfg.loop,
        cfg.optim,
        cfg.schedule,
        total_steps(cfg.loop, len(sampler)),
        items_per_step=None if cfg.data.length_buckets else cfg.loop.batch_size,
        save_model=save_final,
        config=config_to_dict(cfg),
        callbacks=callbacks,
    )
    return trainer.fit()


RECIPE = Recipe(
    "contrastive",
    ContrastiveConfig,
    run,
    "InfoNCE / M3 self-distillation / SimCSE / KL distillation on an Encoder",
)
