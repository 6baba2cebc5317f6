"""Encoder = any HF backbone + a mapping of heads (dense / sparse / multi-vector, or plugins).

The heads are those of BGE-M3 (Chen et al., 2024, "BGE M3-Embedding") plus any registered
in ``embforge.model.heads.HEADS``. One forward pass yields one typed ``EmbeddingOutput``;
callers choose the heads.

Example:
    >>> from embforge.model.encoder import Encoder
    >>> enc = Encoder.from_pretrained()                       # bundled all-MiniLM-L6-v2
    >>> emb = enc.encode(["hello"], heads=("dense",))         # numpy Embeddings
    >>> out = enc(enc.tokenize(["hello"]), heads=("dense",))   # torch EmbeddingOutput (with grad)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from embforge.errors import ConfigError, MissingDependencyError
from embforge.model.checkpoint import BACKENDS, load_encoder, resolve_backend, resolve_path, save_encoder
from embforge.model.config import EncoderConfig
from embforge.model.encode import encode, encode_ids
from embforge.model.flag_compat import (
    colbert_score,
    flag_encode_kwargs,
    ids_to_tokens,
    lexical_matching_score,
)
from embforge.model.fusion import ModelFusion, read_fusion, write_fusion
from embforge.model.heads import HEADS, Head, HeadOptions
from embforge.model.instructions import with_instruction_pool_mask
from embforge.model.plugins import BACKBONE_ADAPTERS, import_attr
from embforge.scoring import FUSIONS, embedding_scores, fuse_rows_by_weights
from embforge.text import check_texts, collate, tokenize_texts, warn_truncated
from embforge.types import Batch, EmbeddingOutput, Embeddings

# FlagEmbedding's names for the BGE-M3 heads, accepted where they are unambiguous.
HEAD_ALIASES = {
    "colbert": "multivector",
    "colbert_vecs": "multivector",
    "lexical_weights": "sparse",
    "lexical": "sparse",
}

__all__ = ["BACKENDS", "Encoder", "LEGACY_HEAD_PREFIXES"]

_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "bge-m3"}
#: State-dict prefixes of embforge checkpoints written before heads became a mapping.
LEGACY_HEAD_PREFIXES = {f"{h}_head.": f"head_modules.{h}." for h in ("dense", "sparse", "multivector")}


class Encoder(nn.Module):
    """Backbone (any ``transformers.AutoModel``) + heads.

    Attributes:
        backbone: the HF model producing last hidden states (B, T, H).
        tokenizer: its HF tokenizer.
        config: ``EncoderConfig`` (heads, pooling, normalisation, prefixes, limits).
        head_modules: ``nn.ModuleDict`` head name -> ``Head`` (registry order; dense always).
        dense_head / sparse_head / multivector_head: the built-in heads (None when not configured).
        fusion: the model folder's hybrid fusion (``fusion.json``, ``embforge.model.fusion``), None
            when it has none (then the paper's weighted sum applies).
    """

    #: Inference backend ("torch"; the ONNX Runtime subclass says "onnx").
    backend = "torch"
    fusion: ModelFusion | None = None

    def __init__(self, backbone: nn.Module, tokenizer, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        model_type = str(getattr(getattr(backbone, "config", None), "model_type", ""))
        if model_type in BACKBONE_ADAPTERS:  # e.g. a decoder LLM made bidirectional (NV-Embed plugin)
            import_attr(BACKBONE_ADAPTERS.get(model_type))(backbone, tokenizer, self.config)
        names = HEADS.ordered(["dense", *self.config.heads])
        self.head_modules = nn.ModuleDict(
            {n: HEADS.get(n).build(self.hidden_size, tokenizer, self.config) for n in names}
        )
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    # ----------------------------------------------------------------- heads
    def head(self, name: str) -> Head:
        """The head module ``name`` (KeyError if this encoder has none)."""
        return cast(Head, self.head_modules[name])

    @property
    def dense_head(self) -> Head:
        return self.head("dense")

    @dense_head.setter
    def dense_head(self, head: Head) -> None:
        self.head_modules["dense"] = head

    @property
    def sparse_head(self) -> Head | None:
        return self.head("sparse") if "sparse" in self.head_modules else None

    @property
    def multivector_head(self) -> Head | None:
        return self.head("multivector") if "multivector" in self.head_modules else None

    # ----------------------------------------------------------------- properties
    @property
    def hidden_size(self) -> int:
        config: Any = self.backbone.config  # a transformers PretrainedConfig
        return int(config.hidden_size)

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this encoder can compute (registry order)."""
        return tuple(self.head_modules.keys())

    @property
    def head_names(self) -> tuple[str, ...]:
        """Alias of ``heads``: what a loss or an index iterates over."""
        return self.heads

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def vocab_size(self) -> int:
        return int(getattr(self.backbone.config, "vocab_size", None) or len(self.tokenizer))

    @property
    def max_length(self) -> int:
        """Default token limit per text: config, else tokenizer and position-embedding limits."""
        if self.config.max_length:
            return min(int(self.config.max_length), self.model_limit)
        return self.model_limit

    @property
    def model_limit(self) -> int:
        """Most tokens the backbone accepts (tokenizer and position-embedding limits)."""
        limits = []
        tml = getattr(self.tokenizer, "model_max_length", None)
        if tml and tml < 1_000_000:
            limits.append(int(tml))
        mpe = getattr(self.backbone.config, "max_position_embeddings", None)
        if mpe:
            off = 2 if getattr(self.backbone.config, "model_type", "") in _ROBERTA_LIKE else 0
            limits.append(int(mpe) - off)
        return min(limits) if limits else 512

    # ----------------------------------------------------------------- loading / saving
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | None = None,
        heads: Sequence[str] | None = None,
        device: str | None = None,
        backend: str = "auto",
    ) -> Encoder:
        """Load an encoder from a directory or hub id (embforge, BGE-M3 or sentence-transformers layout).

        ``None`` loads the bundled all-MiniLM-L6-v2. ``heads`` limits the heads built
        (e.g. ``("dense",)``); heads whose weights the checkpoint lacks are initialised
        deterministically with a warning (see ``embforge.model.checkpoint``).
        ``backend``: "torch", "onnx" (a folder written by ``embforge export --format onnx``, run by
        ONNX Runtime: ``embforge.model.onnx_encoder``) or "auto" (chosen by the folder's contents).
        """
        kind = resolve_backend(path_or_id, backend)
        if kind == "onnx":
            try:
                from embforge.model.onnx_encoder import load_onnx_encoder  # lazy-import: needs onnxruntime
            except ImportError:
                raise MissingDependencyError(
                    "onnxruntime", "loading an ONNX export (embforge[onnx])"
                ) from None

            return load_onnx_encoder(resolve_path(path_or_id), heads=heads).to(device or "cpu")
        enc = load_encoder(path_or_id, heads=heads, factory=cls)
        if path_or_id is not None and Path(path_or_id).is_dir():
            enc.fusion = read_fusion(path_or_id)
        return enc.to(device) if device else enc

    def save_pretrained(self, path: str, format: str = "embforge") -> None:
        """Write to ``path`` as ``format``: "embforge" | "bge-m3" | "sentence-transformers"."""
        save_encoder(self, path, format=format)
        if self.fusion is not None:
            write_fusion(path, self.fusion)

    # ----------------------------------------------------------------- text -> batch
    def prefix(self, role: str) -> str:
        if role == "query":
            return self.config.query_prefix
        if role == "document":
            return self.config.document_prefix
        raise ConfigError(f"unknown role {role!r}; choose from: document, query")

    def tokenize(
        self, texts: str | Iterable[str], role: str = "query", max_length: int | None = None
    ) -> Batch:
        """Texts -> padded ``Batch`` (role prefix added, truncated to ``max_length`` with a warning)."""
        texts = check_texts(texts)
        pre = self.prefix(role)
        limit = self.check_max_length(max_length)
        tok = tokenize_texts(self.tokenizer, [pre + t for t in texts], limit)
        warn_truncated(tok.truncated, len(texts), limit, self.model_limit)
        batch = collate(tok.ids, self.pad_id, getattr(self.tokenizer, "padding_side", "right"))
        return self.mask_prefix(batch, tok.ids, pre)

    def mask_prefix(self, batch: Batch, ids: list[list[int]], prefix: str) -> Batch:
        """Leave the prefix tokens out of pooling when ``config.pool_prefix`` is False (NV-Embed)."""
        if self.config.pool_prefix or not prefix:
            return batch
        return with_instruction_pool_mask(self.tokenizer, batch, ids, prefix)

    @property
    def pad_id(self) -> int:
        pid = self.tokenizer.pad_token_id
        return int(pid if pid is not None else 0)

    def check_max_length(self, max_length: int | None) -> int:
        if max_length is None:
            return self.max_length
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
            raise ConfigError(f"max_length must be an int >= 2, got {max_length!r}")
        if max_length > self.model_limit:
            raise ConfigError(
                f"max_length={max_length} exceeds this model's limit of {self.model_limit} tokens "
                "(position embeddings); pass at most that, or long_inputs='mcls' within it"
            )
        return max_length

    def check_heads(self, heads: Sequence[str] | str | None) -> tuple[str, ...]:
        if heads is None:
            return self.heads
        if isinstance(heads, str):
            heads = (heads,)
        for h in heads:
            HEADS.get(h)  # unknown -> "choose from" error
            if h not in self.heads:
                raise ConfigError(
                    f"head {h!r} is not in this encoder (it has: {', '.join(self.heads)}); "
                    f"load it with Encoder.from_pretrained(path, heads=(..., {h!r}))"
                )
        return tuple(heads)

    # ----------------------------------------------------------------- forward
    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Backbone last hidden states (B, T, H)."""
        out = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, return_dict=True)
        return out.last_hidden_state

    def heads_from_hidden(
        self,
        hidden: torch.Tensor,
        batch: Batch,
        heads: Sequence[str],
        dim: int | None = None,
        cls_positions: Sequence[Sequence[int]] | None = None,
    ) -> EmbeddingOutput:
        """Apply the chosen heads to hidden states (B, T, H); ``cls_positions``: MCLS dense vectors."""
        return EmbeddingOutput.from_parts(
            self.head_outputs(hidden, batch, heads, dim, cls_positions),
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
        )

    def head_outputs(
        self,
        hidden: torch.Tensor,
        batch: Batch,
        heads: Sequence[str],
        dim: int | None = None,
        cls_positions: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{field: tensor}`` of the chosen heads (``EmbeddingOutput`` field names / plugin head names)."""
        opts = HeadOptions(dim=self.check_dim(dim), cls_positions=cls_positions)
        parts: dict[str, torch.Tensor] = {}
        for name in heads:
            parts.update(self.head_modules[name](hidden, batch, opts))
        return parts

    def infer(
        self,
        batch: Batch,
        heads: Sequence[str],
        dim: int | None = None,
        cls_positions: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{field: tensor}`` of the chosen heads for one batch: what ``encode`` runs per batch (the
        ONNX encoder runs its graph here instead)."""
        return self.head_outputs(self.hidden_states(batch), batch, heads, dim, cls_positions)

    def forward(
        self, batch: Batch, heads: Sequence[str] | None = None, dim: int | None = None
    ) -> EmbeddingOutput:
        """One backbone pass, then the chosen heads (default: all this encoder has)."""
        heads = self.check_heads(heads)
        return self.heads_from_hidden(self.hidden_states(batch), batch, heads, dim)

    def check_dim(self, dim: int | None) -> int | None:
        if dim is None:
            return None
        full = self.hidden_size
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= full:
            raise ConfigError(f"dim must be an int in 1..{full} (the dense size), got {dim!r}")
        return dim

    # ----------------------------------------------------------------- encode
    def encode(self, texts: str | Iterable[str], role: str = "document", **kwargs) -> Embeddings:
        """Fast inference to numpy; see :func:`embforge.model.encode.encode` for the options.

        FlagEmbedding's ``BGEM3FlagModel.encode`` options work too (``return_dense``,
        ``return_sparse``, ``return_colbert_vecs``, ``max_length``, ``batch_size``,
        ``convert_to_numpy``), and the result reads by its keys (``out["dense_vecs"]``,
        ``out["lexical_weights"]``, ``out["colbert_vecs"]``): see :mod:`embforge.model.flag_compat`.
        """
        return encode(self, texts, role=role, **flag_encode_kwargs(kwargs))

    def compute_lexical_matching_score(self, a: Any, b: Any) -> Any:
        """FlagEmbedding's name: lexical matching of ``{token id: weight}`` dicts (or lists of them)."""
        return lexical_matching_score(a, b, self.vocab_size)

    def colbert_score(self, q: Any, p: Any) -> float:
        """FlagEmbedding's name: MaxSim of two (T, M) token matrices, divided by the query's T."""
        return colbert_score(q, p)

    def convert_id_to_token(self, lexical_weights: Any) -> Any:
        """FlagEmbedding's name: ``{token id: weight}`` -> ``{token text: weight}`` (dict or list of dicts)."""
        return ids_to_tokens(lexical_weights, self.tokenizer)

    def similarity(
        self, a: str | Iterable[str] | Embeddings, b: str | Iterable[str] | Embeddings, head: str = "dense"
    ) -> Any:
        """All-pairs scores (A, B) of one head, like sentence-transformers' ``similarity``.

        ``a`` and ``b`` are ``Embeddings`` (from :meth:`encode`) or texts, encoded here as queries
        (``a``) and documents (``b``). ``head``: dense, sparse or multivector, or FlagEmbedding's
        names ``colbert`` (= multivector) and ``lexical_weights`` / ``lexical`` (= sparse).
        Scores come from :func:`embforge.scoring.embedding_scores` (Chen et al., 2024, BGE M3).
        ``head="hybrid"`` fuses every head the model has with its fusion (``fusion.json`` from
        ``embforge tune-fusion``, else the paper's weighted ``1*s_dense + 0.3*s_lex + 1*s_mul``),
        each row of (A, B) as one query's candidates.
        """
        name = HEAD_ALIASES.get(head, head)
        if name == "hybrid":
            return self._hybrid_similarity(a, b)
        qa = a if isinstance(a, Embeddings) else self.encode(a, role="query", heads=(name,))
        qb = b if isinstance(b, Embeddings) else self.encode(b, role="document", heads=(name,))
        return embedding_scores(qa, qb, name)

    def _hybrid_similarity(
        self, a: str | Iterable[str] | Embeddings, b: str | Iterable[str] | Embeddings
    ) -> Any:
        heads = tuple(h for h in ("dense", "sparse", "multivector") if h in self.head_modules)
        qa = a if isinstance(a, Embeddings) else self.encode(a, role="query", heads=heads)
        qb = b if isinstance(b, Embeddings) else self.encode(b, role="document", heads=heads)
        scores = {
            h: embedding_scores(qa, qb, h)
            for h in heads
            if qa.output(h) is not None and qb.output(h) is not None
        }
        f = self.fusion or ModelFusion()
        per_query = None
        if f.low_coverage is not None and not isinstance(a, Embeddings):
            per_query = f.query_weights([a] if isinstance(a, str) else list(a), self.tokenizer)
        if per_query is not None and all(np.ndim(s) == 2 for s in scores.values()):
            return fuse_rows_by_weights(scores, f.fusion, per_query, f.rrf_k)
        return FUSIONS.get(f.fusion)(scores, f.weights, rrf_k=f.rrf_k)

    def encode_ids(self, ids: Sequence[Sequence[int]], role: str = "document", **kwargs) -> Embeddings:
        """Token-id inputs, encoded from the ids (never decoded); see :func:`embforge.model.encode.encode_ids`."""
        return encode_ids(self, ids, role=role, **kwargs)


def _rename_legacy_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-time remap of old state-dict keys (``sparse_head.linear.weight`` ->
    ``head_modules.sparse.linear.weight``), so old checkpoints and training states keep loading."""
    for key in list(state_dict):
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        for old, new in LEGACY_HEAD_PREFIXES.items():
            if rest is not None and rest.startswith(old):
                state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
                break
