"""Request handling: validate and count inputs, queue them, shape the responses.

Everything here is plain Python over the pydantic request objects, so the
FastAPI layer (``app.py``) stays thin. Every refusal is an ``ApiError`` whose
message names the bad value, the rule and the fix.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from embforge.errors import CheckpointError
from embforge.model.heads import HEADS
from embforge.search.retriever import model_fusion_kwargs
from embforge.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull, QueueTimeout, Row
from embforge.serve.config import ApiError, ServeConfig
from embforge.serve.engine import EncoderEngine
from embforge.serve.heads import head_fields, requested_heads, unknown_fields
from embforge.serve.metrics import Metrics
from embforge.serve.output import CHUNK
from embforge.serve.schemas import EmbeddingRequest, SearchRequest
from embforge.types import Embeddings

__all__ = ["EmbeddingService", "Prepared"]

_BIG = 16384  # characters (or token ids) above which tokenizing runs in a thread
CHARS_PER_TOKEN = 16  # default character cap per input = this x the token limit per input
_SURROGATE = re.compile("[\ud800-\udfff]")


def _show(x: object, n: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


@dataclass(frozen=True)
class Prepared:
    """Validated texts of one request with their token counts (after truncation)."""

    texts: list[Any]  # texts, or token-id lists
    tokens: list[int]

    @property
    def total(self) -> int:
        return int(sum(self.tokens))


class EmbeddingService:
    """The server's logic: embeddings and search over one engine, batcher and index."""

    def __init__(
        self,
        engine: EncoderEngine,
        batcher: DynamicBatcher,
        config: ServeConfig,
        model_name: str,
        *,
        index: Any = None,
        metrics: Metrics,
        dense_dim: int | None = None,
    ) -> None:
        self.engine, self.batcher, self.config = engine, batcher, config
        self.model_name, self.index, self.metrics = model_name, index, metrics
        self.dense_dim = dense_dim
        limit = config.max_tokens_per_input or engine.max_length
        self.max_tokens = min(limit, engine.max_length)
        self.max_chars = config.max_chars_per_input or CHARS_PER_TOKEN * self.max_tokens

    # ------------------------------------------------------------ validation
    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.model_name and not self.config.any_model:
            raise ApiError(
                404,
                f"model {model!r} is not served here; this server serves {self.model_name!r}: "
                f"pass model={self.model_name!r} (any request may also omit it), or start the server with --any-model",
                param="model",
                code="model_not_found",
            )

    def _as_inputs(self, inp: Any, field: str, truncate: bool) -> list[Any]:
        """The request's inputs as a list: texts, or token-id lists (OpenAI's four input forms)."""
        if isinstance(inp, str):
            inp = [inp]
        if len(inp) == 0:
            raise ApiError(
                400,
                f"{field} is an empty list; send at least one non-empty string",
                param=field,
                code="empty_input",
            )
        if isinstance(inp[0], int):  # one token-id array: {"input": [101, 7592, 102]}
            inp = [inp]
        if len(inp) > self.config.max_inputs:
            raise ApiError(
                400,
                f"{field} has {len(inp)} items, more than the limit of {self.config.max_inputs} per request; "
                "split it into several requests",
                param=field,
                code="too_many_inputs",
            )
        check = self._check_ids if isinstance(inp[0], list) else self._check_text
        return [check(x, f"{field}[{i}]", truncate) for i, x in enumerate(inp)]

    def _too_long(self, n: int, what: str, where: str) -> ApiError:
        return ApiError(
            400,
            f"{where} has {n} {what}, more than the limit of {self.max_chars} per input (checked before "
            f'tokenizing; --max-chars-per-input); shorten or split it, or send "truncate": true to keep '
            f"its first {self.max_chars}",
            param=where,
            code="input_too_long",
        )

    def _check_text(self, x: str, where: str, truncate: bool) -> str:
        """One text: at most ``max_chars`` characters (cut with ``truncate``), valid Unicode, not blank."""
        if len(x) > self.max_chars:
            if not truncate:
                raise self._too_long(len(x), "characters", where)
            x = x[: self.max_chars]
        if _SURROGATE.search(x):
            pos = _SURROGATE.search(x).start()  # type: ignore[union-attr]
            raise ApiError(
                400,
                f"{where} holds a lone UTF-16 surrogate ({_show(x[pos])} at character {pos}), which is not "
                "a Unicode character; send valid UTF-8 text (encode surrogate pairs as one \\U escape "
                "or the raw character)",
                param=where,
                code="invalid_text",
            )
        if not x.strip():
            raise ApiError(
                400,
                f"{where} is empty or whitespace only ({_show(x)}); an empty text has no embedding: "
                "drop it or send real text",
                param=where,
                code="empty_input",
            )
        return x

    def _check_ids(self, ids: list[int], where: str, truncate: bool) -> list[int]:
        """One token-id input: ids of this vocabulary, not only special tokens; encoded from the ids."""
        if not ids:
            raise ApiError(
                400,
                f"{where} is an empty token-id list; send at least one token id",
                param=where,
                code="empty_input",
            )
        if len(ids) > self.max_chars:
            if not truncate:
                raise self._too_long(len(ids), "token ids", where)
            ids = ids[: self.max_chars]
        v = self.engine.num_ids
        for j, t in enumerate(ids):
            if not 0 <= t < v:
                raise ApiError(
                    400,
                    f"{where}[{j}] = {_show(t)} is not a token id of this model (valid ids: 0 to {v - 1}); "
                    "tokenize with the model's own tokenizer or send text",
                    param=f"{where}[{j}]",
                    code="invalid_token_id",
                )
        if self.engine.special_only(ids):
            raise ApiError(
                400,
                f"{where} holds only special tokens ({_show(ids)}); send ids of real text",
                param=where,
                code="empty_input",
            )
        if not self.engine.accepts_ids:
            raise ApiError(
                400,
                f"{where}: this server's encoder cannot encode token ids directly; send text",
                param=where,
                code="token_ids_not_supported",
            )
        return ids

    def prepare(self, inp: Any, role: str, truncate: bool, field: str = "input") -> Prepared:
        """Inputs and token counts of one request, limits enforced (400 with the reason)."""
        texts = self._as_inputs(inp, field, truncate)
        if isinstance(texts[0], list):
            counts = self.engine.count_ids(texts, role)
        else:
            counts = self.engine.count_tokens(texts, role)
        if not truncate:
            for i, n in enumerate(counts):
                if n > self.max_tokens:
                    raise ApiError(
                        400,
                        f"{field}[{i}] has {n} tokens, more than the limit of {self.max_tokens} tokens per input "
                        '(special tokens included); shorten it, split it, or send "truncate": true to cut it',
                        param=f"{field}[{i}]",
                        code="context_length_exceeded",
                    )
        counts = [min(n, self.max_tokens) for n in counts]
        total = sum(counts)
        if total > self.config.max_total_tokens:
            raise ApiError(
                400,
                f"the request has {total} tokens in all, more than the limit of {self.config.max_total_tokens} "
                "per request; split it into several requests",
                param=field,
                code="too_many_tokens",
            )
        return Prepared(texts, counts)

    async def _prepare(self, inp: Any, role: str, truncate: bool, field: str) -> Prepared:
        """``prepare`` inline for small requests (a thread hop costs more than tokenizing a
        sentence), in a thread for big ones so the event loop never stalls."""
        if isinstance(inp, str):
            size = len(inp)
        elif len(inp) >= 64 or (inp and isinstance(inp[0], int)):
            size = len(inp) if inp and isinstance(inp[0], int) else _BIG
        else:
            size = sum(len(x) for x in inp)
        if size < _BIG:
            return self.prepare(inp, role, truncate, field)
        return await asyncio.to_thread(self.prepare, inp, role, truncate, field)

    def _check_heads(self, heads: Sequence[str]) -> None:
        missing = [h for h in heads if h not in self.engine.heads]
        if missing:
            raise ApiError(
                400,
                f"the model {self.model_name!r} has no {'/'.join(missing)} head (it has: "
                f"{', '.join(self.engine.heads)}); drop the {' and '.join(repr(h) for h in missing)} option(s) "
                "or serve a checkpoint with that head (e.g. the BGE-M3 layout)",
                param=missing[0],
                code="head_not_available",
            )

    # ------------------------------------------------------------ batching
    async def run(self, prep: Prepared, role: str, heads: Sequence[str]) -> list[Row]:
        try:
            return await self.batcher.submit(
                prep.texts, prep.tokens, role=role, heads=heads, max_length=self.max_tokens
            )
        except QueueFull as e:
            raise ApiError(
                429,
                f"server busy: {e}; retry after a short pause",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            ) from None
        except (QueueTimeout, BatcherClosed) as e:
            raise ApiError(
                503,
                f"server unavailable: {e}",
                type="server_error",
                code="unavailable",
                headers={"Retry-After": "1"},
            ) from None
        except ApiError:
            raise
        except ValueError as e:  # the encoder refused an input (EmbforgeError is a ValueError)
            raise ApiError(400, f"the encoder refused the input: {e}", code="invalid_input") from None

    # ------------------------------------------------------------ embeddings
    async def embeddings(self, req: EmbeddingRequest) -> dict:
        self.check_model(req.model)
        role = req.role or self.config.default_role
        heads = self._requested(req)
        prep = await self._prepare(req.input, role, req.truncate, "input")
        rows = await self.run(prep, role, heads)
        data = []
        for i, r in enumerate(rows):
            data.append(self._item(i, r, req, heads))
            if i % CHUNK == CHUNK - 1:
                await asyncio.sleep(0)  # thousands of rows: let other requests in between
        self.metrics.tokens.inc(prep.total, endpoint="/v1/embeddings")
        self.metrics.inputs.inc(len(prep.texts), endpoint="/v1/embeddings")
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": prep.total, "total_tokens": prep.total},
        }

    def _requested(self, req: EmbeddingRequest) -> list[str]:
        """The heads to compute for ``req`` (checked against the request fields and the model)."""
        unknown = unknown_fields(req)
        if unknown:
            raise ApiError(
                400,
                f"unknown field {unknown[0]!r} (check its spelling; see docs/serving.md for the fields)",
                param=unknown[0],
                code="invalid_request",
            )
        extra = req.model_extra or {}
        bad = [k for k, v in extra.items() if not isinstance(v, bool)]
        if bad:
            raise ApiError(
                400,
                f"{bad[0]}: must be true or false (got {_show(extra[bad[0]])})",
                param=bad[0],
                code="invalid_request",
            )
        heads = requested_heads(req)
        if not heads:
            raise ApiError(
                400,
                "no output requested: dense, sparse and multivector are all false; ask for at least one",
                param="dense",
                code="no_output",
            )
        self._check_heads(heads)
        if req.dimensions is not None and self.dense_dim is not None and req.dimensions > self.dense_dim:
            raise ApiError(
                400,
                f"dimensions={req.dimensions} exceeds the model's dense size {self.dense_dim}; pass 1 to {self.dense_dim} or omit it",
                param="dimensions",
                code="invalid_dimensions",
            )
        return heads

    def _item(self, i: int, row: Row, req: EmbeddingRequest, heads: Sequence[str]) -> dict:
        item: dict[str, Any] = {"object": "embedding", "index": i}
        item["embedding"] = (
            "" if req.encoding_format == "base64" else []
        )  # OpenAI's field, even without dense
        for h in heads:
            item.update(head_fields(h, row.get(h), req, self.engine.token_strings))
        return item

    # ------------------------------------------------------------ search
    async def search(self, req: SearchRequest) -> dict:
        self.check_model(req.model)
        if self.index is None:
            raise ApiError(
                404,
                "no index is loaded, so /v1/search is unavailable; start the server with --index DIR "
                "(a directory written by `embforge index`)",
                code="index_not_loaded",
            )
        heads = self.search_heads()
        prep = await self._prepare(req.query, "query", req.truncate, "query")
        rows = await self.run(prep, "query", heads)
        emb = self._stack(rows, heads)
        try:
            hits = await asyncio.to_thread(self._search_index, emb, req, prep.texts)
        except ValueError as e:  # EmbforgeError: the index refused the request
            raise ApiError(400, f"the index refused the search: {e}", code="invalid_search") from None
        self.metrics.tokens.inc(prep.total, endpoint="/v1/search")
        self.metrics.inputs.inc(len(prep.texts), endpoint="/v1/search")
        data = []
        for qi, (ids, scores) in enumerate(zip(hits.ids, hits.scores)):
            out = []
            for r, (doc, s) in enumerate(zip(ids, scores)):
                hit: dict[str, Any] = {"id": str(doc), "score": float(s), "rank": r + 1}
                if req.return_scores and hits.per_head:
                    hit["scores"] = {h: float(v[qi][r]) for h, v in hits.per_head.items()}
                out.append(hit)
            data.append({"object": "search_result", "index": qi, "hits": out})
        return {
            "object": "list",
            "data": data,
            "model": self.model_name,
            "usage": {"prompt_tokens": prep.total, "total_tokens": prep.total},
        }

    def search_heads(self) -> list[str]:
        index_heads = tuple(getattr(self.index, "heads", None) or self.engine.heads)
        return [h for h in self.engine.heads if h in index_heads]

    def check_index(self) -> None:
        """At start-up: the model has every head the index holds, and one query searches
        (this also compiles numba kernels before the first request). Raises CheckpointError."""
        index_heads = tuple(getattr(self.index, "heads", None) or ())
        missing = [h for h in index_heads if h not in self.engine.heads]
        if missing:
            raise CheckpointError(
                f"the index holds {'/'.join(missing)} vectors but the model {self.model_name!r} has no such head "
                f"(it has: {', '.join(self.engine.heads)}); serve the model the index was built with"
            )
        heads = tuple(self.search_heads())
        emb = self.engine.encode(["warm-up query"], "query", heads, None)
        try:
            self.index.search(emb, k=1)
        except (ValueError, IndexError) as e:
            raise CheckpointError(
                f"the index does not fit the model {self.model_name!r}: a test search failed with: {e}; "
                "serve the model the index was built with, or rebuild the index with this model"
            ) from e

    def _search_index(self, emb: Embeddings, req: SearchRequest, texts: Sequence[str] | None = None):
        kw: dict[str, Any] = {"k": req.k}
        if req.weights is not None:
            kw["weights"] = dict(req.weights)
        if req.fusion is not None:
            kw["fusion"] = req.fusion
        # the model's fusion.json fills in what the request leaves out (then the index's own setting)
        strings = texts if texts is not None and all(isinstance(t, str) for t in texts) else None
        kw = model_fusion_kwargs(self.engine.encoder, kw, strings)
        return self.index.search(emb, **kw)

    def _stack(self, rows: list[Row], heads: Sequence[str]) -> Embeddings:
        vocab = self.engine.vocab_size
        return Embeddings.from_parts(
            {h: HEADS.get(h).from_rows([r.get(h) for r in rows], vocab) for h in heads}
        )
