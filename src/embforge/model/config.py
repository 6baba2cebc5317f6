"""The encoder's head configuration, stored in ``config.json`` of the embforge layout.

Everything that is not the backbone's own HF config lives here: which heads exist,
the pooling, normalisation, dimensions, length limits and per-role instruction
prefixes (instruction-tuned decoders such as NV-Embed put their task instruction there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from embforge.errors import CheckpointError, ConfigError
from embforge.model.heads import HEADS as HEAD_REGISTRY
from embforge.model.heads.sparse import SPARSE_AGGREGATIONS
from embforge.types import HEADS

__all__ = ["FORMAT_VERSION", "EncoderConfig"]

FORMAT_VERSION = 1


@dataclass
class EncoderConfig:
    """Head configuration of an :class:`~embforge.model.encoder.Encoder`.

    Attributes:
        heads: heads the checkpoint carries: names in ``embforge.model.heads.HEADS`` (the BGE-M3
            heads "dense", "sparse", "multivector", or registered plugin heads).
        pooling: name in ``embforge.model.pooling.POOLINGS`` ("cls", "mean", ...).
        pooling_options: keyword options for the pooling factory (e.g. latent count).
        normalize: L2-normalise dense vectors (and always multi-vectors).
        multivector_dim: M, output size of ``W_mul`` (None = hidden size H).
        max_length: default token limit per text (None = the backbone's limit).
        query_prefix / document_prefix: text prepended per role before tokenizing.
        matryoshka_dims: dims the dense head was trained to truncate to (informative).
        mcls_stride: tokens between two [CLS] tokens for MCLS long-input encoding.
        pool_prefix: False = the role prefix's tokens are attended to but left out of pooling
            (NV-Embed instructions, ``Batch.pool_mask``).
        bidirectional: a decoder backbone runs without its causal mask (NV-Embed,
            ``embforge.nv_embed.decoder``).
        base_model: path / hub id of the base weights of a LoRA-adapter checkpoint.
        sparse_aggregation: how the sparse head weighs a repeated term: "max" (BGE-M3) or
            "max_tf" (max x BM25 term-frequency saturation; ``embforge.model.heads.sparse``).
        sparse_avg_length: ``max_tf``'s reference text length in tokens (BM25's avgdl; the training
            documents' mean, set by the training recipe); None = no length normalisation.
    """

    heads: list[str] = field(default_factory=lambda: list(HEADS))
    pooling: str = "cls"
    pooling_options: dict[str, Any] = field(default_factory=dict)
    normalize: bool = True
    multivector_dim: int | None = None
    max_length: int | None = None
    query_prefix: str = ""
    document_prefix: str = ""
    matryoshka_dims: list[int] = field(default_factory=list)
    mcls_stride: int = 256
    pool_prefix: bool = True
    bidirectional: bool = False
    base_model: str | None = None
    sparse_aggregation: str = "max"
    sparse_avg_length: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(
                f"{source}: unknown encoder config key(s) {unknown}; known keys: {sorted(known)}. "
                "Was it written by a newer embforge? Upgrade embforge or remove the keys."
            )
        try:
            HEAD_REGISTRY.ordered(d.get("heads", []))
        except ConfigError as e:
            raise CheckpointError(
                f"{source}: {e} (a plugin head must be registered before loading)"
            ) from None
        agg = d.get("sparse_aggregation", "max")
        if agg not in SPARSE_AGGREGATIONS:
            raise CheckpointError(
                f"{source}: sparse_aggregation {agg!r} is not one of {', '.join(SPARSE_AGGREGATIONS)}; "
                "fix the value in the file (max is BGE-M3's)"
            )
        avg = d.get("sparse_avg_length")
        if avg is not None and (isinstance(avg, bool) or not isinstance(avg, (int, float)) or avg <= 0):
            raise CheckpointError(
                f"{source}: sparse_avg_length must be a number of tokens > 0 or null, got {avg!r}; "
                "fix the value in the file (null turns the length normalisation off)"
            )
        return cls(**d)
