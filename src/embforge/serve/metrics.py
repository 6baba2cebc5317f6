"""A minimal, thread-safe Prometheus metrics registry (text exposition format 0.0.4).

No dependency on ``prometheus_client``: counters, gauges and histograms with
labels are enough for the server, and their output is pinned by tests.
"""

from __future__ import annotations

import abc
import math
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["Metrics", "Counter", "Gauge", "Histogram", "LATENCY_BUCKETS", "SIZE_BUCKETS"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def _fmt(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric(abc.ABC):
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str], lock: threading.Lock) -> None:
        self.name, self.help, self.labelnames, self._lock = name, help, tuple(labelnames), lock

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise KeyError(f"metric {self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    @abc.abstractmethod
    def render(self) -> list[str]:
        """The metric's lines in the Prometheus text format (each kind writes its own)."""


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *a) -> None:
        super().__init__(*a)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            self._values[k] = self._values.get(k, 0.0) + amount

    def get(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = self.header()
        items = sorted(self._values.items()) or ([((), 0.0)] if not self.labelnames else [])
        for k, v in items:
            lines.append(f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}")
        return lines


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            self._values[k] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help, labelnames, lock, buckets: Sequence[float]) -> None:
        super().__init__(name, help, labelnames, lock)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, **labels: str) -> None:
        k = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(k, [0] * len(self.buckets))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
                    break
            self._sums[k] = self._sums.get(k, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def render(self) -> list[str]:
        lines = self.header()
        keys = sorted(self._counts) or ([()] if not self.labelnames else [])
        for k in keys:
            counts = self._counts.get(k, [0] * len(self.buckets))
            cum = 0
            for b, c in zip(self.buckets, counts):
                cum += c
                le = 'le="' + _fmt(b) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, k, le)} {cum}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, k)} {_fmt(self._sums.get(k, 0.0))}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, k)} {cum}")
        return lines


class Metrics:
    """The server's metrics; ``render()`` gives the ``/metrics`` body."""

    def __init__(self, prefix: str = "embforge") -> None:
        self._lock = threading.Lock()
        self._all: list[Any] = []  # Counter | Gauge | Histogram
        p = prefix
        self.requests = self._add(
            Counter, f"{p}_requests_total", "HTTP requests by endpoint and status code.", ("endpoint", "code")
        )
        self.errors = self._add(
            Counter,
            f"{p}_request_errors_total",
            "HTTP requests answered with status >= 400, by endpoint and code.",
            ("endpoint", "code"),
        )
        self.latency = self._add(
            Histogram,
            f"{p}_request_latency_seconds",
            "Request latency in seconds, by endpoint.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
        )
        self.queue_depth = self._add(Gauge, f"{p}_queue_depth", "Texts waiting or being encoded.", ())
        self.batch_size = self._add(
            Histogram, f"{p}_batch_size", "Texts per micro-batch.", (), buckets=SIZE_BUCKETS
        )
        self.batch_tokens = self._add(
            Histogram,
            f"{p}_batch_tokens",
            "Padded tokens (texts x longest) per micro-batch.",
            (),
            buckets=SIZE_BUCKETS,
        )
        self.batch_seconds = self._add(
            Histogram,
            f"{p}_batch_encode_seconds",
            "Encoder time per micro-batch in seconds.",
            (),
            buckets=LATENCY_BUCKETS,
        )
        self.tokens = self._add(
            Counter,
            f"{p}_tokens_total",
            "Input tokens encoded (usage.prompt_tokens), by endpoint.",
            ("endpoint",),
        )
        self.inputs = self._add(
            Counter, f"{p}_inputs_total", "Input texts encoded, by endpoint.", ("endpoint",)
        )
        self.rejected = self._add(
            Counter,
            f"{p}_rejected_total",
            "Texts refused or dropped by the batcher, by reason (queue_full, timeout, closed, disconnected).",
            ("reason",),
        )
        self.encoder_texts = self._add(
            Counter,
            f"{p}_encoder_texts_total",
            "Texts handed to the encoder, counted when their micro-batch starts.",
            (),
        )

    def _add(self, cls, name, help, labels, **kw):
        m = cls(name, help, labels, self._lock, **kw)
        self._all.append(m)
        return m

    def render(self) -> str:
        with self._lock:
            lines = [line for m in self._all for line in m.render()]
        return "\n".join(lines) + "\n"
