"""The HTTP/1.1 protocol the server runs: uvicorn's h11 protocol plus a deadline on the request head.

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
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from embforge.serve.config import ServeConfig

__all__ = ["HeadDeadlineProtocol", "http_protocol"]


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


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with a deadline on each request head (``header_timeout_s``)."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]  # uvicorn narrows the type
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_timer is None:  # the first bytes of a new request head
                self._arm()
        else:
            self._disarm()  # the head is complete (or the connection is done)

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer for the idle wait
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return  # a request is running: its body deadline and the app take over
        if self.conn.our_state is h11.IDLE:
            self.transport.write(_timeout_response(self.header_timeout_s))
        self.transport.close()


def http_protocol(config: ServeConfig) -> type[HeadDeadlineProtocol]:
    """The protocol class for ``uvicorn.run(app, http=...)`` with ``config``'s head deadline."""
    return type(
        "HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"header_timeout_s": float(config.header_timeout_s)}
    )
