"""What the server needs from an encoder, in one adapter.

The server works with any object that has ``encode(texts, role=, heads=, dim=,
batch_size=, max_length=, ...) -> Embeddings`` and a Hugging Face ``tokenizer``
(``embforge.model.encoder.Encoder`` does); the optional ``config`` gives the
heads the checkpoint carries, its maximum length and per-role text prefixes.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import threading
from collections.abc import Sequence
from typing import Any

from embforge.model.encoder import Encoder
from embforge.serve.heads import order_heads
from embforge.types import HEADS, Embeddings

__all__ = ["EncoderEngine", "load_encoder"]

_UNBOUNDED = 1_000_000  # HF uses a huge int for "no limit"


def load_encoder(model: str | os.PathLike | None, *, heads: Sequence[str] | None = None) -> Any:
    """Load an ``Encoder`` by path or hub id (None = the bundled all-MiniLM-L6-v2);
    ``heads`` limits the heads built (None = all the checkpoint has)."""
    return Encoder.from_pretrained(str(model) if model else None, heads=tuple(heads) if heads else None)


class EncoderEngine:
    """Token counting, limits and encoding on top of an encoder object.

    Args:
        encoder: an ``Encoder`` (or anything with the same ``encode`` and ``tokenizer``).
        dtype: passed to ``encode`` (``"fp32"`` or ``"bf16"``).
        batch_tokens: the micro-batch token budget, passed as ``max_tokens`` so the
            encoder runs each micro-batch as one forward pass.
    """

    def __init__(self, encoder: Any, *, dtype: str = "fp32", batch_tokens: int | None = None) -> None:
        self.encoder = encoder
        self.dtype = dtype
        # One private copy per thread: HF fast tokenizers raise "Already borrowed" when one
        # object is used from several threads (the encoder's own copy runs in the encode
        # thread; counting runs on the event loop and, for big requests, in worker threads).
        self.tokenizer = encoder.tokenizer
        self._local = threading.local()
        self._shared_lock = threading.Lock()  # only for tokenizers that cannot be copied
        cfg = getattr(encoder, "config", None)
        heads = getattr(encoder, "heads", None)  # Encoder.heads: what it can compute
        if not isinstance(heads, (tuple, list)):
            heads = getattr(cfg, "heads", None)
        self.heads: tuple[str, ...] = order_heads(HEADS if heads is None else heads)
        self.prefixes = {role: self._prefix(role, cfg) for role in ("query", "document")}
        self.max_length = self._model_max_length(cfg)
        self.num_ids = len(self.tokenizer)  # valid token ids of inputs: 0 .. num_ids-1
        vs = getattr(encoder, "vocab_size", None)
        self.vocab_size = int(vs) if isinstance(vs, int) else self.num_ids  # sparse columns
        self.batch_tokens = batch_tokens
        params = inspect.signature(encoder.encode).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._extra = {
            k: v
            for k, v in (("max_tokens", batch_tokens), ("show_progress", False))
            if v is not None and (takes_any or k in params)
        }

    def _prefix(self, role: str, cfg: Any) -> str:
        fn = getattr(self.encoder, "prefix", None)
        if callable(fn):
            return fn(role) or ""
        return getattr(cfg, f"{role}_prefix", "") or ""

    def _model_max_length(self, cfg: Any) -> int:
        cands = [getattr(self.encoder, "max_length", None), getattr(cfg, "max_length", None)]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max is not None and tok_max < _UNBOUNDED:
            cands.append(tok_max)
        bb_cfg = getattr(getattr(self.encoder, "backbone", None), "config", None)
        pos = getattr(bb_cfg, "max_position_embeddings", None)
        if pos is not None and getattr(bb_cfg, "model_type", "") in ("xlm-roberta", "roberta"):
            pos -= 2  # RoBERTa position ids start at padding_idx + 1
        cands.append(pos)
        for c in cands:
            if isinstance(c, int) and c > 0:
                return c
        return 512

    # ------------------------------------------------------------------ tokens
    @contextlib.contextmanager
    def _tok(self):
        """This thread's copy of the tokenizer (the shared one under a lock if it cannot be copied)."""
        tok = getattr(self._local, "tok", None)
        if tok is None:
            try:
                tok = self._local.tok = copy.deepcopy(self.tokenizer)
            except Exception:  # pragma: no cover - exotic tokenizers
                tok = self._local.tok = False
        if tok is False:
            with self._shared_lock:
                yield self.tokenizer
        else:
            yield tok

    def count_tokens(self, texts: Sequence[str], role: str) -> list[int]:
        """Tokens per text as the encoder will see them (role prefix and special tokens included)."""
        prefix = self.prefixes.get(role, "")
        with self._tok() as tok:
            enc = tok([prefix + t for t in texts], add_special_tokens=True, truncation=False, verbose=False)
        return [len(x) for x in enc["input_ids"]]

    def ids_to_text(self, ids: Sequence[int]) -> str:
        """Text of a token-id input (special tokens dropped); re-tokenized by ``encode``."""
        with self._tok() as tok:
            return tok.decode(list(ids), skip_special_tokens=True)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        with self._tok() as tok:
            return list(tok.convert_ids_to_tokens([int(i) for i in ids]))

    # ------------------------------------------------------------------ encode
    def encode(
        self, texts: list[str], role: str, heads: tuple[str, ...], max_length: int | None
    ) -> Embeddings:
        """One micro-batch, full dimension (truncation per request happens after)."""
        return self.encoder.encode(
            texts,
            role=role,
            heads=heads,
            dim=None,
            batch_size=len(texts),
            max_length=max_length,
            dtype=self.dtype,
            **self._extra,
        )
