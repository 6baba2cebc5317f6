"""`embforge serve`: the OpenAI-compatible embedding server (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import Optional

import typer

from embforge.cli._common import (
    backend_option,
    dtype_option,
    heads_option,
    model_option,
    parse_heads,
    resolve_heads,
    set_threads,
    threads_option,
)
from embforge.errors import ConfigError

__all__ = ["register"]


def serve(
    model: Optional[str] = model_option(),
    index: Optional[str] = typer.Option(
        None, "--index", help="Index directory (from `embforge index`) to enable POST /v1/search."
    ),
    heads: str = heads_option(
        "Heads to load, comma-separated: dense, sparse, multivector; 'auto' = the heads the checkpoint "
        "has trained weights for (with --index: all three, for the index's heads)."
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Interface to bind; a non-loopback address (0.0.0.0, a LAN address) needs --api-key or --allow-unauthenticated.",
    ),
    allow_unauthenticated: bool = typer.Option(
        False,
        "--allow-unauthenticated",
        help="Serve a non-loopback --host without an API key (anyone who can reach it may use it).",
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: Optional[str] = typer.Option(
        None,
        "--api-key",
        envvar="EMBFORGE_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1/* (also from $EMBFORGE_API_KEY).",
    ),
    model_name: Optional[str] = typer.Option(
        None,
        "--model-name",
        help="Name reported as `model` in responses (default: the model path's last part).",
    ),
    any_model: bool = typer.Option(
        False, "--any-model", help="Accept any `model` name in requests (for clients that hard-code one)."
    ),
    default_role: str = typer.Option(
        "document",
        "--default-role",
        help="Role of /v1/embeddings inputs that do not send `role`: document or query.",
    ),
    dtype: str = dtype_option(
        "Encoder compute dtype: fp32 or bf16 (bf16 is fast only on CPUs with AMX, and on GPUs)."
    ),
    max_batch_tokens: int = typer.Option(
        16384, "--max-batch-tokens", help="Token budget of one micro-batch (texts x longest text)."
    ),
    max_batch_size: int = typer.Option(256, "--max-batch-size", help="Texts per micro-batch at most."),
    max_wait_ms: float = typer.Option(
        5.0,
        "--max-wait-ms",
        help="How long the first queued text waits for others to join its batch (only while other requests are on their way).",
    ),
    max_batch_ms: Optional[float] = typer.Option(
        500.0,
        "--max-batch-ms",
        help="Aim for micro-batches of at most this many ms of encoding (at the measured speed), so a big "
        "request cannot hold small ones for long; 0 = no time cap, only --max-batch-tokens.",
    ),
    max_inline_ms: float = typer.Option(
        5.0,
        "--max-inline-ms",
        help="A lone text on an idle server whose encode takes under this many ms (as measured so far) is "
        "encoded on the event loop's thread, saving two thread hand-offs; 0 = always in the encode thread.",
    ),
    max_queue: int = typer.Option(
        4096, "--max-queue", help="Texts waiting or encoding at most; more -> HTTP 429."
    ),
    queue_timeout: float = typer.Option(
        60.0, "--queue-timeout", help="Seconds a text may wait before HTTP 503."
    ),
    max_inputs: int = typer.Option(
        2048, "--max-inputs", help="Inputs per request at most (HTTP 400 beyond)."
    ),
    max_tokens_per_input: Optional[int] = typer.Option(
        None, "--max-tokens-per-input", help="Tokens per input at most (default: the model's maximum length)."
    ),
    max_chars_per_input: Optional[int] = typer.Option(
        None,
        "--max-chars-per-input",
        help="Characters per input at most, checked before tokenizing (default: 16 x the tokens per input).",
    ),
    max_total_tokens: int = typer.Option(300_000, "--max-total-tokens", help="Tokens per request at most."),
    threads: Optional[int] = threads_option(),
    backend: str = backend_option(),
    keep_alive: float = typer.Option(
        30.0,
        "--timeout-keep-alive",
        help="Seconds an idle keep-alive connection stays open (uvicorn's default is 5).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    http_parser: str = typer.Option(
        "auto",
        "--http-parser",
        help="HTTP/1.1 parser: httptools (C, faster under load), h11 (pure Python) or auto (httptools "
        "when installed). Both enforce the request-head deadline.",
    ),
) -> None:
    """Serve MODEL over HTTP: POST /v1/embeddings (OpenAI-compatible, plus sparse, multivector
    and int8/binary outputs), POST /v1/search with --index, GET /healthz and /metrics.

    Example: embforge serve -m BAAI/bge-m3 --index idx/ --port 8000 --api-key s3cret
    """
    import uvicorn

    from embforge.serve import ServeConfig, create_app
    from embforge.serve.config import check_exposure
    from embforge.serve.protocol import http_protocol

    check_exposure(host, api_key, allow_unauthenticated)  # before loading anything
    if http_parser not in ("auto", "httptools", "h11"):
        raise ConfigError(f"--http-parser {http_parser!r}: choose auto, httptools or h11")
    set_threads(threads)
    config = ServeConfig(
        model_name=model_name,
        api_key=api_key,
        default_role=default_role,
        max_batch_tokens=max_batch_tokens,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_batch_ms=max_batch_ms or None,
        max_inline_ms=max_inline_ms,
        max_queue_inputs=max_queue,
        queue_timeout_s=queue_timeout,
        max_inputs=max_inputs,
        max_tokens_per_input=max_tokens_per_input,
        max_chars_per_input=max_chars_per_input,
        max_total_tokens=max_total_tokens,
        dtype=dtype,
        backend=backend,
        any_model=any_model,
    )
    head_list = parse_heads(heads)
    if head_list is None and index is None:
        head_list = resolve_heads(heads, model)
    app = create_app(model, index=index, config=config, heads=head_list)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        # uvicorn annotates int but only hands it to asyncio's call_later, where fractions of a second work
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # see above
        http=http_protocol(config, http_parser),  # a deadline on request heads (slowloris)
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
