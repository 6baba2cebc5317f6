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
from embforge.text import frame_token_ids
from embforge.types import HEADS, Embeddings

__all__ = ["EncoderEngine", "load_encoder"]

_UNBOUNDED = 1_000_000  # HF uses a huge int for "no limit"
_COUNT_CHUNK = 32  # texts per tokenizer call when counting (a big request never holds the GIL long)


def load_encoder(
    model: str | os.PathLike | None, *, heads: Sequence[str] | None = None, backend: str = "auto"
) -> Any:
    """Load an ``Encoder`` by path or hub id (None = the bundled all-MiniLM-L6-v2);
    ``heads`` limits the heads built (None = all the checkpoint has); ``backend``: torch, onnx or auto."""
    return Encoder.from_pretrained(
        str(model) if model else None, heads=tuple(heads) if heads else None, backend=backend
    )


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

    def _backend(self) -> Any:
        """This thread's copy of the fast tokenizer's Rust ``tokenizers.Tokenizer`` with truncation
        and padding off (None for a slow tokenizer)."""
        if not hasattr(self._local, "backend"):
            bt: Any = None
            src = getattr(self.tokenizer, "backend_tokenizer", None)
            if src is not None:
                try:
                    bt = copy.deepcopy(src)
                    bt.no_truncation()
                    bt.no_padding()
                except Exception:  # pragma: no cover - exotic tokenizers
                    bt = None
            self._local.backend = bt
        return self._local.backend

    def count_tokens(self, texts: Sequence[str], role: str) -> list[int]:
        """Tokens per text as the encoder will see them (role prefix and special tokens included).

        A fast tokenizer counts with its Rust ``Tokenizer`` directly: the same ids as the HF call
        (``truncation=False``), without its Python wrapping, which was most of a one-sentence
        request's counting time."""
        prefix = self.prefixes.get(role, "")
        chunks = [
            [prefix + t for t in texts[i : i + _COUNT_CHUNK]] for i in range(0, len(texts), _COUNT_CHUNK)
        ]
        bt = self._backend()
        counts: list[int] = []
        if bt is not None:
            encode = getattr(bt, "encode_batch_fast", None) or bt.encode_batch  # fast: no offsets
            for chunk in chunks:  # short calls: other threads get the GIL between
                counts += [len(e.ids) for e in encode(chunk, add_special_tokens=True)]
            return counts
        with self._tok() as tok:
            for chunk in chunks:
                enc = tok(chunk, add_special_tokens=True, truncation=False, verbose=False)
                counts += [len(x) for x in enc["input_ids"]]
        return counts

    @property
    def accepts_ids(self) -> bool:
        """Whether the encoder encodes token-id inputs directly (``encode_ids``, as ``Encoder`` does)."""
        return callable(getattr(self.encoder, "encode_ids", None))

    def count_ids(self, inputs: Sequence[list[int]], role: str) -> list[int]:
        """Tokens per token-id input as the encoder will see them (framed: role prefix and special
        tokens added, those already present kept once; see ``embforge.text.frame_token_ids``)."""
        with self._tok() as tok:
            framed = frame_token_ids(tok, list(inputs), self.prefixes.get(role, ""), 1 << 62)
        return [len(x) for x in framed.ids]

    def special_only(self, ids: Sequence[int]) -> bool:
        """True if every id is a special token ([CLS], [SEP], padding, ...): no content to embed."""
        special = getattr(self, "_special", None)
        if special is None:
            special = self._special = set(getattr(self.tokenizer, "all_special_ids", ()) or ())
        return all(t in special for t in ids)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        with self._tok() as tok:
            return list(tok.convert_ids_to_tokens([int(i) for i in ids]))

    # ------------------------------------------------------------------ encode
    def encode(
        self, texts: list[Any], role: str, heads: tuple[str, ...], max_length: int | None
    ) -> Embeddings:
        """One micro-batch (all texts, or all token-id lists), full dimension (truncation per
        request happens after)."""
        if texts and isinstance(texts[0], list):
            kw = {k: v for k, v in self._extra.items() if k == "max_tokens"}
            return self.encoder.encode_ids(
                texts, role=role, heads=heads, max_length=max_length, dtype=self.dtype, **kw
            )
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
