"""Server settings (limits, batching, auth) and the API error type."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, fields

from embforge.errors import ConfigError

__all__ = ["ServeConfig", "ApiError", "check_exposure", "is_loopback"]


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server.

    Attributes:
        model_name: the name reported in responses (``model``); requests may name
            it or omit it. None = the model path's last part.
        api_key: if set, every ``/v1/*`` request needs ``Authorization: Bearer <key>``.
        default_role: role of ``/v1/embeddings`` inputs that do not say
            (``"document"`` or ``"query"``); ``/v1/search`` always encodes queries.
        max_batch_tokens: token budget of one micro-batch (padded tokens:
            number of texts x longest text); one text longer than it runs alone.
        max_batch_size: at most this many texts per micro-batch.
        max_wait_ms: how long the first text of a micro-batch waits for others.
        max_batch_ms: milliseconds of encoding per micro-batch to aim for: the token budget is
            also capped at this long at the encoder's measured speed, so one batch of long texts
            cannot hold small requests for long on a slow or loaded CPU (the fairness bound);
            None = only ``max_batch_tokens``.
        max_inline_ms: a lone text on an idle server whose encode is predicted (from the lone
            texts so far) within this many milliseconds is encoded on the event loop's thread,
            saving the two thread hand-offs (about 0.2 ms; see ``DynamicBatcher``); 0 = never.
        max_queue_inputs: texts waiting or being encoded; beyond it -> 429.
        queue_timeout_s: a text not started within this time -> 503.
        max_inputs: texts per request (OpenAI: 2048).
        max_tokens_per_input: tokens per text incl. special tokens; None = the
            model's maximum length.
        max_chars_per_input: characters (or token ids) per input, checked before tokenizing so
            a huge text costs nothing (400, or cut with ``truncate``); None = 16 x the token
            limit per input.
        max_total_tokens: tokens per request (OpenAI: 300,000).
        max_body_bytes: request body size limit (413 beyond).
        header_timeout_s: the request line and headers must arrive within this many seconds of
            the connection opening or of the request's first byte, else 408 and the connection
            closes (slowloris; applied by ``embforge.serve.protocol``, which ``embforge serve`` runs).
        body_timeout_s: the whole body must arrive within this many seconds of the request
            head, else 408 and the connection closes (a body sent a byte at a time).
        dtype: encoder compute dtype (``"fp32"`` or ``"bf16"``).
        backend: "torch", "onnx" (an ``embforge export --format onnx`` folder) or "auto" (by the
            model folder's contents); see ``Encoder.from_pretrained``.
        any_model: accept any ``model`` name in requests (for clients that hard-code
            one); by default another name than ``model_name`` is a 404.
    """

    model_name: str | None = None
    api_key: str | None = None
    default_role: str = "document"
    max_batch_tokens: int = 16384
    max_batch_size: int = 256
    max_wait_ms: float = 5.0
    max_batch_ms: float | None = 500.0
    max_inline_ms: float = 5.0
    max_queue_inputs: int = 4096
    queue_timeout_s: float = 60.0
    max_inputs: int = 2048
    max_tokens_per_input: int | None = None
    max_chars_per_input: int | None = None
    max_total_tokens: int = 300_000
    max_body_bytes: int = 64 * 1024 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    dtype: str = "fp32"
    backend: str = "auto"
    any_model: bool = False

    def __post_init__(self) -> None:
        problems = _numbers_problems(self)
        if self.default_role not in ("query", "document"):
            problems.append(f"default_role={self.default_role!r} must be 'query' or 'document'")
        if self.dtype not in ("fp32", "bf16"):
            problems.append(f"dtype={self.dtype!r} must be 'fp32' or 'bf16'")
        if self.backend not in ("auto", "torch", "onnx"):
            problems.append(f"backend={self.backend!r} must be 'auto', 'torch' or 'onnx'")
        if isinstance(self.max_inputs, int) and self.max_inputs > self.max_queue_inputs:
            problems.append(
                f"max_inputs={self.max_inputs} exceeds max_queue_inputs={self.max_queue_inputs}: a "
                "single request could never be queued; raise max_queue_inputs or lower max_inputs"
            )
        if self.api_key is not None and not self.api_key.strip():
            problems.append("api_key is empty; pass a non-empty key or none to disable auth")
        if problems:
            raise ConfigError("invalid server settings: " + "; ".join(problems))


_NOT_NUMBERS = frozenset({"model_name", "api_key", "default_role", "dtype", "backend", "any_model"})
_OPTIONAL = ("max_tokens_per_input", "max_chars_per_input")  # None = derived from the model
_OPTIONAL_NUMBERS = ("max_batch_ms",)  # None = off
_ZERO_OK = ("max_wait_ms", "max_inline_ms")


def _numbers_problems(cfg: ServeConfig) -> list[str]:
    problems = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in _NOT_NUMBERS or (f.name in _OPTIONAL + _OPTIONAL_NUMBERS and v is None):
            continue
        if f.name in _OPTIONAL and (not isinstance(v, int) or v < 1):
            problems.append(f"{f.name}={v!r} must be >= 1 or None")
        elif not isinstance(v, (int, float)) or not v >= 0 or (v == 0 and f.name not in _ZERO_OK):
            problems.append(f"{f.name}={v!r} must be a positive number")
    return problems


class ApiError(Exception):
    """An error returned to the client as OpenAI-style JSON.

    Args:
        status: HTTP status code.
        message: what was wrong and how to fix it.
        type: OpenAI error type (``invalid_request_error``, ``authentication_error``,
            ``rate_limit_error``, ``server_error``, ...).
        param: the request field at fault, if any.
        code: a short machine-readable code.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        """``{"error": {...}}`` with every string valid UTF-8 (a lone surrogate from the request
        is written as its ``\\ud800``-style escape, so rendering the error can never fail)."""
        return {
            "error": {
                "message": _printable(self.message),
                "type": self.type,
                "param": None if self.param is None else _printable(self.param),
                "code": self.code,
            }
        }


def _printable(s: str) -> str:
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def is_loopback(host: str) -> bool:
    """True if ``host`` (an address or a name) only ever means this machine (127.0.0.0/8, ::1)."""
    if not host:
        return False  # "" binds every interface
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def check_exposure(host: str, api_key: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to serve a non-loopback address without an API key unless asked explicitly.

    Raises:
        ConfigError: ``host`` reaches other machines, no ``api_key`` and not ``allow_unauthenticated``.
    """
    if api_key or allow_unauthenticated or is_loopback(host):
        return
    raise ConfigError(
        f"--host {host!r} exposes the server beyond this machine without an API key; pass --api-key KEY "
        "(or set EMBFORGE_API_KEY), or --allow-unauthenticated to serve anyone who can reach it, "
        "or bind --host 127.0.0.1"
    )
