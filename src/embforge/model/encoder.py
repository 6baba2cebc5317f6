"""Encoder = any HF backbone + the dense / sparse / multi-vector heads (SPEC section 1).

One forward pass yields one typed ``EmbeddingOutput``; callers choose the heads.

Example:
    >>> from embforge.model.encoder import Encoder
    >>> enc = Encoder.from_pretrained()                       # bundled all-MiniLM-L6-v2
    >>> emb = enc.encode(["hello"], heads=("dense",))         # numpy Embeddings
    >>> out = enc(enc.tokenize(["hello"]), heads=("dense",))   # torch EmbeddingOutput (with grad)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from embforge.errors import ConfigError
from embforge.model.config import EncoderConfig
from embforge.model.decoder import is_decoder_config
from embforge.model.heads import DenseHead, MultiVectorHead, SparseHead, truncate_dense
from embforge.model.pooling import build_pooling
from embforge.text import check_texts, collate, tokenize_texts
from embforge.types import HEADS, Batch, EmbeddingOutput, Embeddings

__all__ = ["Encoder"]

logger = logging.getLogger("embforge")

_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "bge-m3"}


class Encoder(nn.Module):
    """Backbone (any ``transformers.AutoModel``) + heads.

    Attributes:
        backbone: the HF model producing last hidden states (B, T, H).
        tokenizer: its HF tokenizer.
        config: ``EncoderConfig`` (heads, pooling, normalisation, prefixes, limits).
        dense_head / sparse_head / multivector_head: the heads (None when not configured).
    """

    def __init__(self, backbone: nn.Module, tokenizer, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config or EncoderConfig()
        if is_decoder_config(getattr(backbone, "config", None)):  # NV-Embed-style decoder backbone
            from embforge.model.decoder import set_bidirectional
            from embforge.model.nv_embed import prepare_decoder_tokenizer

            prepare_decoder_tokenizer(tokenizer)  # right padding, EOS appended
            set_bidirectional(backbone, self.config.bidirectional)
        h = self.hidden_size
        pooling = build_pooling(self.config.pooling, h, **self.config.pooling_options)
        self.dense_head = DenseHead(pooling, self.config.normalize)
        special = [i for i in getattr(tokenizer, "all_special_ids", []) if i is not None]
        self.sparse_head = SparseHead(h, special) if "sparse" in self.config.heads else None
        self.multivector_head = (
            MultiVectorHead(h, self.config.multivector_dim) if "multivector" in self.config.heads else None
        )

    # ----------------------------------------------------------------- properties
    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this encoder can compute."""
        return tuple(h for h in HEADS if h == "dense" or h in self.config.heads)

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
        cls, path_or_id: str | None = None, heads: Sequence[str] | None = None, device: str | None = None
    ) -> Encoder:
        """Load an encoder from a directory or hub id (embforge, BGE-M3 or sentence-transformers layout).

        ``None`` loads the bundled all-MiniLM-L6-v2. ``heads`` limits the heads built
        (e.g. ``("dense",)``); heads whose weights the checkpoint lacks are initialised
        deterministically with a warning (see ``embforge.model.checkpoint``).
        """
        from embforge.model.checkpoint import load_encoder

        enc = load_encoder(path_or_id, heads=heads)
        return enc.to(device) if device else enc

    def save_pretrained(self, path: str, format: str = "embforge") -> None:
        """Write to ``path`` as ``format``: "embforge" | "bge-m3" | "sentence-transformers"."""
        from embforge.model.checkpoint import save_encoder

        save_encoder(self, path, format=format)

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
        warn_truncated(tok.truncated, len(texts), tok, limit, self.model_limit)
        batch = collate(tok.ids, self.pad_id, getattr(self.tokenizer, "padding_side", "right"))
        return self.mask_prefix(batch, tok.ids, pre)

    def mask_prefix(self, batch: Batch, ids: list[list[int]], prefix: str) -> Batch:
        """Leave the prefix tokens out of pooling when ``config.pool_prefix`` is False (NV-Embed)."""
        if self.config.pool_prefix or not prefix:
            return batch
        from embforge.model.instructions import with_instruction_pool_mask

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
            if h not in HEADS:
                raise ConfigError(f"unknown head {h!r}; choose from: {', '.join(HEADS)}")
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
        self, hidden: torch.Tensor, batch: Batch, heads: Sequence[str], dim: int | None = None
    ) -> EmbeddingOutput:
        """Apply the chosen heads to hidden states (B, T, H)."""
        dense = sparse = mv = mv_mask = None
        if "dense" in heads:
            pm = batch.attention_mask if batch.pool_mask is None else batch.pool_mask
            dense = truncate_dense(self.dense_head(hidden, pm), self.check_dim(dim), self.config.normalize)
        if "sparse" in heads:
            sparse = self.sparse_head(hidden, batch.input_ids, batch.attention_mask)
        if "multivector" in heads:
            mv, mv_mask = self.multivector_head(hidden, batch.attention_mask)
        return EmbeddingOutput(dense, sparse, mv, mv_mask, batch.input_ids, batch.attention_mask)

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
        """Fast inference to numpy; see :func:`embforge.model.encode.encode` for the options."""
        from embforge.model.encode import encode

        return encode(self, texts, role=role, **kwargs)


def warn_truncated(idx: list[int], n: int, tok, limit: int, model_limit: int) -> None:
    if not idx:
        return
    logger.warning(
        "%d of %d texts are longer than max_length=%d tokens and were truncated (first: text %d). "
        "Pass a larger max_length (this model allows up to %d) or long_inputs='mcls' to encode() to keep more.",
        len(idx),
        n,
        limit,
        idx[0],
        model_limit,
    )
