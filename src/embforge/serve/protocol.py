"""The HTTP/1.1 protocol the server runs: uvicorn's protocol plus a deadline on the request head.

uvicorn times out only idle kept-alive connections, and every byte received resets that timer, so
a client that sends its request head one byte at a time (slowloris), or opens a connection and
sends nothing, holds the connection open for ever; enough of them exhaust the process's sockets.
Here every request head (request line and headers) must arrive within ``header_timeout_s`` of the
connection opening or of the request's first byte; otherwise the server answers
``408 Request Timeout`` with ``Connection: close`` and closes the connection. The body has its own
deadline, ``ServeConfig.body_timeout_s``, enforced by the app while it streams (``app.py``). Other
connections never wait on a slow one: the event loop serves them all. Header size stays bounded by
h11 (16 KiB of incomplete head at most).

Run the app with it: ``uvicorn.run(app, http=http_protocol(config))`` (``embforge serve`` does).

Two parsers carry the deadline: uvicorn's httptools protocol (``HttpToolsHeadDeadlineProtocol``, the
C parser llhttp; the default when ``httptools`` is installed, as it is with embforge) and its h11
protocol (``HeadDeadlineProtocol``, pure Python; ``embforge serve --http-parser h11``). Measured on
2 cores with the int8 ONNX MiniLM, uvloop in both, two interleaved rounds of bench/serve.py's
embforge-onnx-int8 piece (``EMBFORGE_SERVE_ARGS="--http-parser h11|httptools"``), requests/s
httptools vs h11: 64 clients 679 / 730 vs 654 / 577; 1 client 494 / 538 vs 483 / 375; 16 and 256
clients mixed (645 / 677 vs 742 / 634; 512 / 592 vs 545 / 515).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # the C parser; without it the h11 protocol carries the deadline
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency of embforge
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from embforge.serve.config import ServeConfig

__all__ = ["HeadDeadlineProtocol", "HttpToolsHeadDeadlineProtocol", "http_protocol"]


def _timeout_response(seconds: float) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": f"the request head (request line and headers) did not arrive within {seconds:g} s; "
                "send the whole head at once",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_timeout",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadDeadline:
    """The deadline's timer, shared by both parsers' protocols (mixed in before uvicorn's class):
    ``_arm`` / ``_disarm``; disarmed when a response completes (uvicorn's keep-alive timer then
    watches the idle connection) and when the connection is lost. Subclasses say when a request
    head starts and ends, and what ``_head_timeout`` finds."""

    header_timeout_s: float = 10.0
    loop: asyncio.AbstractEventLoop
    _head_timer: asyncio.TimerHandle | None
    _head_timeout: Callable[[], None]  # each parser's protocol: whether a head is pending, then 408

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # arms uvicorn's keep-alive timer
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None


class HeadDeadlineProtocol(_HeadDeadline, H11Protocol):
    """uvicorn's ``H11Protocol`` with a deadline on each request head (``header_timeout_s``)."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]  # uvicorn narrows the type
        self._head_timer = None
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_timer is None:  # the first bytes of a new request head
                self._arm()
        else:
            self._disarm()  # the head is complete (or the connection is done)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return  # a request is running: its body deadline and the app take over
        if self.conn.our_state is h11.IDLE:
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()


class HttpToolsHeadDeadlineProtocol(_HeadDeadline, HttpToolsProtocol or object):  # type: ignore[misc]
    """uvicorn's ``HttpToolsProtocol`` with a deadline on each request head (``header_timeout_s``):
    armed when the connection opens and when a new request's first bytes arrive
    (``on_message_begin``), disarmed when its headers are complete."""

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]  # uvicorn narrows the type
        self._head_timer = None
        self._in_head = True  # waiting for (the rest of) a request head
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return  # a request is running: its body deadline and the app take over
        if self.cycle is None or self.cycle.response_complete:  # no response of ours is under way
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()


def http_protocol(config: ServeConfig, parser: str = "auto") -> type:
    """The protocol class for ``uvicorn.run(app, http=...)`` with ``config``'s head deadline.

    ``parser``: "httptools", "h11", or "auto" (httptools when installed, else h11)."""
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"parser {parser!r}: choose auto, httptools or h11")
    use_httptools = HttpToolsProtocol is not None and parser != "h11"
    if parser == "httptools" and HttpToolsProtocol is None:
        raise ValueError("parser 'httptools': the httptools package is not installed (pip install httptools)")
    base: type = HttpToolsHeadDeadlineProtocol if use_httptools else HeadDeadlineProtocol
    return type(base.__name__, (base,), {"header_timeout_s": float(config.header_timeout_s)})
