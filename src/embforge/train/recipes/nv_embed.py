"""Recipe ``nv-embed``: two-stage contrastive instruction tuning of a decoder LLM (NV-Embed).

Lee et al. 2024, "NV-Embed: Improved Techniques for Training LLMs as Generalist
Embedding Models":

- the backbone is a decoder LLM made bidirectional, trained with LoRA;
- pooling is latent attention over the last hidden states (mean / last-token for ablations);
- queries carry ``Instruct: {task}\\nQuery: `` (per data source), documents do not;
  instruction tokens are excluded from pooling;
- **stage 1**: retrieval data, InfoNCE with in-batch negatives + hard negatives;
- **stage 2**: retrieval blended with non-retrieval data (STS pairs with score >= 4,
  NLI triples, ...), in-batch negatives **off** (batch-mates of the same class would be
  false negatives): each query is scored against its own positive and hard negatives only.

Run: ``embforge train configs/nv-embed.yaml [key=value ...]``.
The loss is :class:`embforge.losses.InfoNCELoss` (``in_batch_negatives`` per stage).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from embforge.atomic import atomic_write_text
from embforge.config import Choice, Recipe, config_to_dict
from embforge.data.samplers import SourceBatchSampler
from embforge.losses import InfoNCELoss
from embforge.model.checkpoint import default_model_path
from embforge.model.encoder import Encoder
from embforge.model.instructions import instruction_prefix
from embforge.nv_embed.lora import DECODER_TARGET_MODULES, LoraSettings
from embforge.nv_embed.model import NV_POOLINGS, build_nv_embed, save_nv_embed
from embforge.text import collate, tokenize_texts
from embforge.train.loop import Callback, Trainer, TrainResult
from embforge.train.nv_embed_data import Example, SourceConfig, TrainBatch, add_negatives, load_source
from embforge.train.runtime import enable_checkpointing, seed_everything
from embforge.train.settings import LoopConfig, OptimConfig, ScheduleConfig
from embforge.train.step import contrastive_step
from embforge.types import Batch, LossOutput

__all__ = [
    "NVEmbedConfig",
    "NVModelConfig",
    "LoraSection",
    "StageConfig",
    "RECIPE",
    "run",
    "run_stage",
    "build_model",
    "stage_loss",
    "tokenize_with_prefix",
]

logger = logging.getLogger("embforge")

DEFAULT_TASK = "Given a question, retrieve passages that answer the question"


@dataclass
class LoraSection:
    """LoRA on the backbone (NV-Embed: r=16, alpha=32, dropout=0.1, all projections)."""

    enabled: bool = True
    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: list(DECODER_TARGET_MODULES))

    def validate(self) -> list[str]:
        return (
            []
            if not self.enabled
            else LoraSettings(self.r, self.alpha, self.dropout, self.target_modules).validate()
        )


@dataclass
class NVModelConfig:
    """The NV-Embed encoder.

    Attributes:
        backbone: path or hub id of a decoder LLM (Llama / Mistral / Qwen2 style); null = a
            tiny random decoder (``tiny_*`` sizes) with the bundled MiniLM tokenizer, for smoke runs.
        tokenizer: tokenizer path (null = the backbone's own).
        tiny_arch, tiny_hidden_size, tiny_layers, tiny_heads: the tiny random decoder.
        pooling: latent_attention (NV-Embed), mean or last_token (EOS).
        num_latents, num_heads: latent-attention sizes (paper: 512 latents, 8 heads).
        bidirectional: remove the causal mask (NV-Embed: true).
        task: the default query instruction stored with the model (used by encode / the server).
        max_length: token limit per text in training.
        lora: LoRA settings (enabled: false trains every backbone weight).
        gradient_checkpointing: recompute the backbone's activations in backward.
    """

    backbone: str | None = None
    tokenizer: str | None = None
    tiny_arch: Literal["llama", "mistral", "qwen2"] = "llama"
    tiny_hidden_size: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4
    pooling: Annotated[str, Choice(NV_POOLINGS)] = "latent_attention"
    num_latents: int = 512
    num_heads: int = 8
    bidirectional: bool = True
    task: str = DEFAULT_TASK
    max_length: int = 256
    lora: LoraSection = field(default_factory=LoraSection)
    gradient_checkpointing: bool = False

    def validate(self) -> list[str]:
        errs = []
        if self.max_length < 4:
            errs.append(f"max_length: must be >= 4, got {self.max_length}")
        if self.num_latents < 1:
            errs.append(f"num_latents: must be >= 1, got {self.num_latents}")
        if self.backbone is None and self.tiny_hidden_size % self.tiny_heads:
            errs.append(
                f"tiny_hidden_size: {self.tiny_hidden_size} is not divisible by tiny_heads {self.tiny_heads}"
            )
        if (
            self.backbone is None
            and self.pooling == "latent_attention"
            and self.tiny_hidden_size % self.num_heads
        ):
            errs.append(
                f"num_heads: {self.num_heads} does not divide tiny_hidden_size {self.tiny_hidden_size}"
            )
        return errs


@dataclass
class StageConfig:
    """One training stage.

    Attributes:
        name: label for logs and the stage's folder (``<loop.output_dir>/stage<i>-<name>``).
        in_batch_negatives: score each query against every document of the batch (stage 1)
            or only against its own positive and hard negatives (stage 2).
        steps: optimizer steps.
        batch_size: queries per step (every source needs at least this many examples).
        negatives: hard negatives per query (own ones first, then random same-source documents).
        sources: the data sources (one source per batch, drawn in proportion to size).
        optim: AdamW settings of this stage (NV-Embed: lr 2e-5).
        schedule: learning-rate schedule of this stage.
    """

    name: str = "stage"
    in_batch_negatives: bool = True
    steps: int = 100
    batch_size: int = 16
    negatives: int = 1
    sources: list[SourceConfig] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5, weight_decay=0.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_ratio=0.1))

    def validate(self) -> list[str]:
        errs = []
        for k in ("steps", "batch_size"):
            if getattr(self, k) < 1:
                errs.append(f"{k}: must be >= 1, got {getattr(self, k)}")
        if self.negatives < 0:
            errs.append(f"negatives: must be >= 0, got {self.negatives}")
        if not self.in_batch_negatives and self.negatives < 1:
            errs.append("negatives: with in_batch_negatives false each query needs >= 1 hard negative")
        if not self.sources:
            errs.append("sources: list at least one data source")
        return errs


@dataclass
class NVEmbedConfig:
    """The ``nv-embed`` recipe (see the module docstring and configs/nv-embed.yaml).

    ``loop`` holds what all stages share (output_dir, seed, precision, sub_batch_size for
    GradCache, checkpointing, resume, threads); each stage sets its own steps and batch
    size, so ``loop.max_steps`` / ``loop.batch_size`` / ``loop.epochs`` are not used.
    """

    recipe: str = "nv-embed"
    model: NVModelConfig = field(default_factory=NVModelConfig)
    stages: list[StageConfig] = field(default_factory=list)
    temperature: float = 0.02
    save_lora: Literal["merged", "adapter"] = "merged"
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(output_dir="runs/nv-embed", log_every=10))

    def validate(self) -> list[str]:
        errs = []
        if not self.stages:
            errs.append("stages: list at least one stage (NV-Embed: retrieval, then blend)")
        if self.temperature <= 0:
            errs.append(f"temperature: must be > 0, got {self.temperature}")
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names):
            errs.append(f"stages: names must differ (they name the stage folders), got {names}")
        return errs


# ----------------------------------------------------------------------------- model


def _tiny_backbone(m: NVModelConfig, vocab_size: int, seed: int) -> torch.nn.Module:
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[m.tiny_arch]
    cfg = cls(
        hidden_size=m.tiny_hidden_size,
        intermediate_size=2 * m.tiny_hidden_size,
        num_hidden_layers=m.tiny_layers,
        num_attention_heads=m.tiny_heads,
        num_key_value_heads=max(1, m.tiny_heads // 2),
        vocab_size=vocab_size,
        max_position_embeddings=max(512, m.max_length),
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    return AutoModel.from_config(cfg)


def build_model(m: NVModelConfig, seed: int = 0) -> Encoder:
    """The NV-Embed ``Encoder`` described by ``m`` (tiny random decoder when ``backbone`` is null)."""
    lora = (
        LoraSettings(m.lora.r, m.lora.alpha, m.lora.dropout, list(m.lora.target_modules))
        if m.lora.enabled
        else None
    )
    backbone: torch.nn.Module | str
    tok: PreTrainedTokenizerBase | None
    if m.backbone is None:
        tok = AutoTokenizer.from_pretrained(m.tokenizer or default_model_path())
        backbone = _tiny_backbone(m, len(tok), seed)
    else:
        backbone = m.backbone
        tok = AutoTokenizer.from_pretrained(m.tokenizer) if m.tokenizer else None
    enc = build_nv_embed(
        backbone,
        tok,
        pooling=m.pooling,
        num_latents=m.num_latents,
        num_heads=m.num_heads,
        task=m.task,
        bidirectional=m.bidirectional,
        lora=lora,
        max_length=m.max_length,
        seed=seed,
    )
    if m.gradient_checkpointing:
        enable_checkpointing(enc.backbone)
    return enc


# ----------------------------------------------------------------------------- one step


def tokenize_with_prefix(enc: Encoder, texts: list[str], prefix: str, max_length: int) -> Batch:
    """Texts with ``prefix`` -> ``Batch`` whose pool mask leaves out the prefix (when the model says so)."""
    tok = tokenize_texts(enc.tokenizer, [prefix + t for t in texts], max_length)
    batch = collate(tok.ids, enc.pad_id, getattr(enc.tokenizer, "padding_side", "right"))
    return enc.mask_prefix(batch, tok.ids, prefix)


def stage_loss(enc: Encoder, batch: TrainBatch, loss_fn: InfoNCELoss, max_length: int) -> LossOutput:
    """Encode a ``TrainBatch`` (instruction on the queries) and apply the contrastive loss (tests, benchmarks)."""
    pre = instruction_prefix(batch.instruction)
    qb = tokenize_with_prefix(enc, batch.queries, pre, max_length).to(enc.device)
    db = tokenize_with_prefix(enc, batch.documents, pre if batch.symmetric else "", max_length).to(enc.device)
    q = enc(qb, heads=("dense",))  # dense (Q, H)
    d = enc(db, heads=("dense",))  # dense (Q*G, H)
    return loss_fn(q, d, group_size=batch.group_size)


def _dedupe(batch: TrainBatch) -> TrainBatch:
    """Drop queries whose positive is another kept query's document (a false in-batch negative)."""
    g = batch.group_size
    keep: list[int] = []
    docs_seen: set[str] = set()
    positives: set[str] = set()
    for i in range(len(batch.queries)):
        group = batch.documents[i * g : (i + 1) * g]
        if group[0] in docs_seen or positives.intersection(group[1:]):
            continue
        keep.append(i)
        positives.add(group[0])
        docs_seen.update(group)
    if len(keep) == len(batch.queries):
        return batch
    docs = [t for i in keep for t in batch.documents[i * g : (i + 1) * g]]
    return dataclasses.replace(batch, queries=[batch.queries[i] for i in keep], documents=docs)


def _stage_data(
    stage: StageConfig, seed: int
) -> tuple[list[Example], dict[str, list[int]], list[SourceConfig]]:
    """Every source's examples (with negatives), the rows of each source, and each row's source."""
    examples: list[Example] = []
    sources: dict[str, list[int]] = {}
    specs: list[SourceConfig] = []
    for j, src in enumerate(stage.sources):
        exs = add_negatives(load_source(src), stage.negatives, seed + j)
        sources[src.label] = list(range(len(examples), len(examples) + len(exs)))
        examples += exs
        specs += [src] * len(exs)
    return examples, sources, specs


@dataclass
class StageStep:
    """One step of a stage: one-source batch -> instruction-prefixed texts -> (cached) contrastive step."""

    enc: Encoder
    stage: StageConfig
    examples: list[Example]
    specs: list[SourceConfig]
    loss: InfoNCELoss
    max_length: int
    sub_batch_size: int | None

    def encode(self, b: Batch):
        return self.enc(b.to(self.enc.device), heads=("dense",))

    def batch(self, idx: np.ndarray) -> TrainBatch:
        src = self.specs[int(idx[0])]
        chosen = [self.examples[int(i)] for i in idx]
        docs = [t for e in chosen for t in (e.positive, *e.negatives)]
        group = 1 + self.stage.negatives
        batch = TrainBatch(src.label, [e.query for e in chosen], docs, group, src.instruction, src.symmetric)
        return _dedupe(batch) if self.stage.in_batch_negatives else batch

    def __call__(self, idx: np.ndarray, step: int) -> LossOutput:
        batch = self.batch(idx)
        pre = instruction_prefix(batch.instruction)
        qb = tokenize_with_prefix(self.enc, batch.queries, pre, self.max_length)
        db = tokenize_with_prefix(self.enc, batch.documents, pre if batch.symmetric else "", self.max_length)
        group = 1 + self.stage.negatives

        def loss_fn(q, d):  # one process: NV-Embed's batches are not gathered across devices
            return self.loss(q, d, group_size=group)

        return contrastive_step(self.encode, qb, db, loss_fn, self.sub_batch_size)


def _stage_seed(cfg: NVEmbedConfig, index: int) -> int:
    return cfg.loop.seed + 1000 * index


def run_stage(
    enc: Encoder,
    stage: StageConfig,
    cfg: NVEmbedConfig,
    index: int,
    callbacks: Sequence[Callback] = (),
    data: tuple[list[Example], dict[str, list[int]], list[SourceConfig]] | None = None,
) -> dict[str, Any]:
    """Train one stage with the shared ``Trainer`` and step (resumable); returns a summary.
    ``data``: the stage's ``_stage_data`` when already read (``run`` reads every stage's first)."""
    seed = _stage_seed(cfg, index)
    examples, sources, specs = data if data is not None else _stage_data(stage, seed)
    sampler = SourceBatchSampler(sources, stage.batch_size, seed=seed)
    loss = InfoNCELoss(("dense",), temperature=cfg.temperature, in_batch_negatives=stage.in_batch_negatives)
    step = StageStep(enc, stage, examples, specs, loss, cfg.model.max_length, cfg.loop.sub_batch_size)
    loop = dataclasses.replace(
        cfg.loop,
        output_dir=str(Path(cfg.loop.output_dir) / f"stage{index + 1}-{stage.name}"),
        batch_size=stage.batch_size,
        max_steps=stage.steps,
    )
    trainer = Trainer(
        enc,
        step,
        sampler,
        loop,
        stage.optim,
        stage.schedule,
        stage.steps,
        stage.batch_size,
        callbacks=callbacks,
    )
    result = trainer.fit()
    enc.eval()
    losses = [r["loss"] for r in result.log]
    return {
        "stage": stage.name,
        "steps": stage.steps,
        "in_batch_negatives": stage.in_batch_negatives,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "examples": {k: len(v) for k, v in sources.items()},
        "log": str(result.output_dir / "log.jsonl"),
    }


def _write_log(out: Path, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One log over the stages: every row tagged with its stage."""
    log = []
    for st in stages:
        for line in Path(st["log"]).read_text(encoding="utf-8").splitlines():
            log.append({"stage": st["stage"], **json.loads(line)})
    atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in log))
    return log


def run(cfg: NVEmbedConfig, callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train every stage in order; the model goes to ``<loop.output_dir>/final``.

    Also writes ``log.jsonl`` (all stages) and ``summary.json``; returns a ``TrainResult``.
    """
    if cfg.loop.threads:
        torch.set_num_threads(cfg.loop.threads)
    seed_everything(cfg.loop.seed)
    # every stage's files are read and checked before the model loads: a bad line at the end of
    # the last stage's file fails in seconds, not after stage 1 has trained
    data = [_stage_data(st, _stage_seed(cfg, i)) for i, st in enumerate(cfg.stages)]
    out = Path(cfg.loop.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(config_to_dict(cfg), indent=1))
    enc = build_model(cfg.model, cfg.loop.seed)
    n_train = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in enc.parameters())
    logger.info("nv-embed: %d of %d parameters train", n_train, n_all)
    stages = [run_stage(enc, st, cfg, i, callbacks, data[i]) for i, st in enumerate(cfg.stages)]
    save_nv_embed(enc, out / "final", lora=cfg.save_lora)
    log = _write_log(out, stages)
    summary = {
        "model_dir": str(out / "final"),
        "trainable_params": n_train,
        "params": n_all,
        "stages": stages,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return TrainResult(sum(st.steps for st in cfg.stages), log, out)


RECIPE = Recipe(
    "nv-embed",
    NVEmbedConfig,
    run,
    "NV-Embed: bidirectional decoder + latent attention, 2-stage instruction tuning",
)
