"""The FastAPI application: ``create_app(...)`` builds it; importing loads nothing but code.

Routes: ``POST /v1/embeddings`` (OpenAI-compatible + extensions), ``POST /v1/search``,
``GET /v1/models``, ``GET /healthz``, ``GET /metrics`` (Prometheus text).
Every error is OpenAI-style JSON ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from embforge.index import load_index
from embforge.serve.batcher import DynamicBatcher
from embforge.serve.config import ApiError, ServeConfig
from embforge.serve.engine import EncoderEngine, load_encoder
from embforge.serve.metrics import Metrics
from embforge.serve.output import render_json
from embforge.serve.schemas import EmbeddingRequest, EmbeddingResponse, SearchRequest, SearchResponse
from embforge.serve.service import EmbeddingService

__all__ = ["create_app"]

log = logging.getLogger("embforge.serve")


def _model_name(model: Any, config: ServeConfig) -> str:
    if config.model_name:
        return config.model_name
    if model is None:
        return "all-MiniLM-L6-v2"
    if isinstance(model, (str, Path)):
        return Path(str(model).rstrip("/")).name or str(model)
    return str(getattr(model, "name", None) or "embforge")


def _load_index(index: Any) -> Any:
    if index is None or not isinstance(index, (str, Path)):
        return index
    return load_index(str(index))


def create_app(
    model: Any = None,
    *,
    index: Any = None,
    config: ServeConfig | None = None,
    heads: Sequence[str] | None = None,
) -> Any:
    """Build the server app.

    Args:
        model: a checkpoint path or hub id (loaded with ``Encoder.from_pretrained``),
            None for the bundled all-MiniLM-L6-v2, or an already loaded encoder
            object (anything with ``encode(...) -> Embeddings`` and ``tokenizer``).
        index: an index directory (``embforge index`` output) or a loaded index
            object with ``search(Embeddings, k=, weights=) -> Hits``; enables ``/v1/search``.
        config: limits, batching and auth (``ServeConfig``).
        heads: when ``model`` is a path: the heads to load (e.g. ``("dense",)`` to
            skip untrained sparse/multivector heads); None = all the checkpoint has.

    Returns:
        A FastAPI app; run it with ``uvicorn.run(app, host="127.0.0.1", port=8000)``.

    Example:
        >>> from embforge.serve import create_app, ServeConfig   # doctest: +SKIP
        >>> app = create_app("BAAI/bge-m3", config=ServeConfig(api_key="s3cret"))  # doctest: +SKIP
    """
    config = config or ServeConfig()
    service = _build_service(model, index, config, heads)
    batcher = service.batcher

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="embforge",
        description="OpenAI-compatible embeddings with sparse and multi-vector outputs, and hybrid search.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = service.metrics
    app.state.batcher = batcher
    direct: dict[str, DirectRoute] = {}
    _add_middleware(app, config, service.metrics, batcher, direct)
    _add_error_handlers(app)
    handlers = _json_handlers(service)
    _add_routes(app, service, service.metrics, handlers)
    direct.update(_direct_routes(app, handlers))
    app.state.direct_routes = direct  # emptied, every request goes through FastAPI (tests compare)
    return app


def _build_service(
    model: Any, index: Any, config: ServeConfig, heads: Sequence[str] | None
) -> EmbeddingService:
    """Load the encoder (if a path), warm it up, and wire engine, batcher, metrics and index."""
    if model is None or isinstance(model, (str, Path)):
        encoder = load_encoder(None if model is None else str(model), heads=heads, backend=config.backend)
    else:
        encoder = model
    engine = EncoderEngine(encoder, dtype=config.dtype, batch_tokens=config.max_batch_tokens)
    dense_dim = None
    engine.count_tokens(["warm-up"], "document")  # copies the tokenizer for this thread
    if "dense" in engine.heads:  # warm-up, and the dense size for `dimensions` checks
        warm = engine.encode(["warm-up"], "document", ("dense",), None).dense
        if warm is None:
            raise RuntimeError(f"{type(encoder).__name__} lists a dense head but returned no dense output")
        dense_dim = int(warm.shape[1])
    metrics = Metrics()
    batcher = DynamicBatcher(
        engine.encode,
        max_batch_tokens=config.max_batch_tokens,
        max_batch_size=config.max_batch_size,
        max_wait_s=config.max_wait_ms / 1000.0,
        max_batch_s=None if config.max_batch_ms is None else config.max_batch_ms / 1000.0,
        max_inline_s=config.max_inline_ms / 1000.0,
        max_queue=config.max_queue_inputs,
        queue_timeout_s=config.queue_timeout_s,
        metrics=metrics,
    )
    service = EmbeddingService(
        engine,
        batcher,
        config,
        _model_name(model, config),
        index=_load_index(index),
        metrics=metrics,
        dense_dim=dense_dim,
    )
    if service.index is not None:
        service.check_index()
    return service


#: Paths open without the API key (probes and scrapers); everything else, /docs and
#: /openapi.json included, follows the key when one is set.
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
#: Paths whose requests go through the batcher.
_ENCODING_PATHS = frozenset({"/v1/embeddings", "/v1/search"})


class _BodyTooLarge(ApiError):
    def __init__(self, limit: int, got: str) -> None:
        super().__init__(
            413,
            f"the request body has {got} bytes, more than the limit of {limit}; "
            "send fewer or shorter inputs per request",
            code="body_too_large",
            headers={"Connection": "close"},
        )


@dataclass(frozen=True)
class DirectRoute:
    """A POST route the middleware answers itself when the body is a valid ``model`` (JSON):
    ``handler(request) -> JSON bytes``. Anything else (invalid body, other content type) goes
    through FastAPI, whose validation gives the error; the two paths share the model and handler."""

    model: type[BaseModel]
    handler: Callable[[Any], Awaitable[bytes]]
    route: Any  # the FastAPI route (its ``path`` labels the metrics)


def _json_handlers(service: EmbeddingService) -> dict[str, Callable[[Any], Awaitable[bytes]]]:
    """The POST endpoints' work, request model -> JSON bytes; the FastAPI routes and the direct
    routes both call these."""

    async def embeddings(req: EmbeddingRequest) -> bytes:
        return await render_json(await service.embeddings(req))

    async def search(req: SearchRequest) -> bytes:
        return await render_json(await service.search(req))

    return {"/v1/embeddings": embeddings, "/v1/search": search}


def _direct_routes(app, handlers: dict[str, Callable[[Any], Awaitable[bytes]]]) -> dict[str, DirectRoute]:
    """``/v1/embeddings`` and ``/v1/search`` without FastAPI's request machinery (routing, a second
    body read, dependency solving): 0.1 ms less per request, a tenth of a short text's encode."""
    routes = {getattr(r, "path", None): r for r in app.routes}
    models: dict[str, type[BaseModel]] = {"/v1/embeddings": EmbeddingRequest, "/v1/search": SearchRequest}
    return {path: DirectRoute(models[path], handler, routes[path]) for path, handler in handlers.items()}


class _GuardAndMeasure:
    """Pure ASGI middleware (cheaper than ``BaseHTTPMiddleware``), outermost of the app:

    * bearer auth on every path but ``OPEN_PATHS``, and the body limit, enforced while the
      body streams in (``Content-Length`` or chunked alike) before the app sees a byte;
    * a client that disconnects cancels its request, so its queued texts are dropped;
    * any unhandled exception becomes a 500 without internal details (logged with an id),
      answered here so the kept-alive connection stays usable;
    * request/error counters and the latency histogram;
    * ``direct`` routes answered without FastAPI when the body is valid (``DirectRoute``).
    """

    def __init__(
        self,
        app,
        config: ServeConfig,
        metrics,
        batcher: DynamicBatcher | None = None,
        direct: dict[str, DirectRoute] | None = None,
    ) -> None:
        self.app, self.config, self.metrics, self.batcher = app, config, metrics, batcher
        self.direct = direct if direct is not None else {}
        self.expected = f"Bearer {config.api_key}".encode() if config.api_key else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        seen = {"status": 500, "started": False, "done": False}

        async def send_and_see(message) -> None:
            if message["type"] == "http.response.start":
                seen["status"], seen["started"] = message["status"], True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                seen["done"] = True
            await send(message)

        try:
            _refuse(Request(scope), self.config, self.expected)
            # on its way from the request head on: a burst of requests parsed in one event-loop
            # step all count before the first of them reaches the batcher, so they share a batch
            with self._on_the_way(scope):
                chunks = await _read_body(receive, self.config.max_body_bytes, self.config.body_timeout_s)
                if chunks is not None:  # None: the client left while sending
                    app = self._direct_app(scope, chunks) or self.app
                    await self._run(app, scope, chunks, receive, send_and_see, seen)
        except ApiError as e:
            if not seen["started"]:
                await _error_response(e)(scope, receive, send_and_see)
        except Exception as exc:  # a bug: answer 500 here, keep the connection
            if seen["started"]:
                raise
            ref = uuid.uuid4().hex[:12]
            log.exception("unhandled error %s on %s", ref, scope.get("path"))
            await _error_response(_internal(exc, ref))(scope, receive, send_and_see)
        finally:
            self._record(scope, seen["status"], t0)

    def _on_the_way(self, scope):
        """An encoding request counts as on its way to the batcher from its head until it submits
        its texts, so the batcher waits for it (``max_wait_ms``) only when it is coming, and does
        not encode a lone text inline while it is."""
        if self.batcher is None or scope.get("method") != "POST" or scope.get("path") not in _ENCODING_PATHS:
            return contextlib.nullcontext()
        return self.batcher.on_the_way()

    def _direct_app(self, scope, chunks: list[dict]):
        """An ASGI app answering this request by its ``DirectRoute`` (None: let FastAPI answer)."""
        direct = self.direct.get(scope["path"]) if scope.get("method") == "POST" else None
        if direct is None or not _is_json(scope):
            return None
        try:
            req = direct.model.model_validate_json(b"".join(c.get("body", b"") for c in chunks))
        except ValidationError:
            return None  # FastAPI validates again and words the error
        scope["route"] = direct.route

        async def answer(
            scope, receive, send
        ) -> None:  # an ApiError is answered by __call__, as for FastAPI's
            body = await direct.handler(req)
            head = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": head})
            await send({"type": "http.response.body", "body": body})

        return answer

    async def _run(self, app, scope, chunks: list[dict], receive, send, seen: dict) -> None:
        """Run ``app`` on the buffered body; cancel it if the client disconnects first."""
        gone = asyncio.Event()
        replay = deque(chunks)

        async def app_receive():
            if replay:
                return replay.popleft()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        app_task = asyncio.ensure_future(app(scope, app_receive, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({app_task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not app_task.done() and not seen["done"]:  # the client went away: drop its work
                app_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await app_task
                seen["status"] = 499  # nginx's "client closed request", for the metrics
                return
            await app_task
        finally:
            watcher.cancel()

    def _record(self, scope, status: int, t0: float) -> None:
        endpoint = getattr(scope.get("route"), "path", None) or "other"
        code = str(status)
        self.metrics.requests.inc(endpoint=endpoint, code=code)
        if status >= 400:
            self.metrics.errors.inc(endpoint=endpoint, code=code)
        self.metrics.latency.observe(time.perf_counter() - t0, endpoint=endpoint)


class _BodyTimeout(ApiError):
    def __init__(self, seconds: float, got: int) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {seconds:g} s ({got} bytes received); "
            "send the body at once, or split a very large request",
            code="request_timeout",
            headers={"Connection": "close"},
        )


async def _read_body(receive, limit: int, timeout_s: float | None = None) -> list[dict] | None:
    """The request body's messages, at most ``limit`` bytes in all (413 as soon as it is
    exceeded, whatever the transfer encoding) and all within ``timeout_s`` seconds (408 after:
    a body sent a byte at a time holds nothing for long); None if the client disconnected first."""
    chunks, size = [], 0
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            raise _BodyTimeout(float(timeout_s or 0), size) from None
        if message["type"] == "http.disconnect":
            return None
        size += len(message.get("body", b""))
        if size > limit:
            raise _BodyTooLarge(limit, f"more than {size}")
        chunks.append(message)
        if not message.get("more_body", False):
            return chunks


def _error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def _add_middleware(
    app, config: ServeConfig, metrics, batcher: DynamicBatcher | None, direct: dict[str, DirectRoute]
) -> None:
    app.add_middleware(_GuardAndMeasure, config=config, metrics=metrics, batcher=batcher, direct=direct)


def _is_json(scope) -> bool:
    """Whether the request says ``Content-Type: application/json`` (parameters such as charset aside)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _has_body(request) -> bool:
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() != "0")


def _refuse(request, config: ServeConfig, expected: bytes | None):
    """Auth and declared body-size checks before the body is read (None = go on). A refusal
    of a request whose body is left unread says ``Connection: close``."""
    close = {"Connection": "close"} if _has_body(request) else {}
    if expected is not None and request.url.path not in OPEN_PATHS:
        got = request.headers.get("authorization", "").encode()
        if not secrets.compare_digest(got, expected):
            what = "missing" if not got else "invalid"
            raise ApiError(
                401,
                f"{what} API key: send the header 'Authorization: Bearer <key>' with the key the server "
                "was started with (--api-key / EMBFORGE_API_KEY)",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer", **close},
            )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > config.max_body_bytes:
        raise _BodyTooLarge(config.max_body_bytes, length)
    return None


def _internal(exc: Exception, ref: str) -> ApiError:
    """A 500 that names no internal detail (the log has the traceback under ``ref``)."""
    return ApiError(
        500,
        f"internal error (reference {ref} in the server log); the server keeps running, please report it",
        type="server_error",
        code="internal_error",
    )


def _validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """One readable sentence from pydantic's errors (and the field at fault)."""
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON ({first.get('msg')}); send a JSON object", None
    if not loc and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
        return (
            'the request body must be a JSON object (Content-Type: application/json) such as {"input": "some text"}',
            None,
        )
    if loc and loc[0] in ("input", "query"):
        field = loc[0]
        got = first.get("input")
        if first.get("type") == "missing":
            return f"{field!r} is required: a string or a list of strings", field
        kinds = "a string, a list of strings" + (
            ", a list of token ids (integers) or a list of lists of token ids" if field == "input" else ""
        )
        return f"{field} must be {kinds}; got {type(got).__name__} {str(got)[:80]}", field
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        if e.get("type") == "extra_forbidden":
            parts.append(f"unknown field {where!r} (check its spelling; see docs/serving.md for the fields)")
        else:
            parts.append(f"{where}: {e.get('msg')} (got {str(e.get('input'))[:80]})")
    return "; ".join(parts), (".".join(loc) or None)


def _add_error_handlers(app) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        message, param = _validation_message(list(exc.errors()))
        return JSONResponse(
            ApiError(400, message, param=param, code="invalid_request").body(), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        msg = {
            404: f"no route {request.url.path}; see /docs for the API",
            405: f"method {request.method} is not allowed on {request.url.path}",
        }
        err = ApiError(
            exc.status_code, msg.get(exc.status_code, str(exc.detail)), code=f"http_{exc.status_code}"
        )
        return JSONResponse(err.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _add_routes(app, service, metrics, handlers: dict[str, Callable[[Any], Awaitable[bytes]]]) -> None:
    @app.post("/v1/embeddings", response_model=EmbeddingResponse)
    async def embeddings(req: EmbeddingRequest):
        """OpenAI-compatible embeddings (plus sparse / multivector / quantized extensions)."""
        return Response(await handlers["/v1/embeddings"](req), media_type="application/json")

    @app.post("/v1/search", response_model=SearchResponse)
    async def search(req: SearchRequest):
        """Query text(s) -> ranked document ids from the loaded hybrid index."""
        return Response(await handlers["/v1/search"](req), media_type="application/json")

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": service.model_name, "object": "model", "owned_by": "embforge"}],
        }

    @app.get("/healthz")
    async def healthz():
        return {
            "status": "ok",
            "model": service.model_name,
            "heads": list(service.engine.heads),
            "dense_dim": service.dense_dim,
            "max_tokens_per_input": service.max_tokens,
            "queue_depth": service.batcher.depth,
            "index": service.index is not None,
        }

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
