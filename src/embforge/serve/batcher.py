"""Dynamic micro-batching by token budget, off the event loop.

Requests put their texts in one bounded queue; a single worker task groups
queued texts of the same kind (role, max length) into micro-batches whose
padded size (texts x longest text) stays within a token budget, waits at most
``max_wait_s`` after the first text for others to join (only while other requests are on their
way: ``arriving``, counted by the app from the request's arrival to its ``submit``), and runs the encoder
in a dedicated thread so the event loop keeps accepting requests while the
model computes. While one batch is encoding the next one fills up, so batches
grow with load and latency stays low when idle.

A lone short text on an idle server (nothing else queued, encoding or on its way) whose encode
is predicted under ``max_inline_s`` (from the lone texts measured so far, in seconds per token) is
encoded on the event loop's own thread instead, inside ``submit`` when nothing at all is queued
or encoding (no queue, no task switch): the two thread hand-offs cost more than holding
the loop for that long, when no other request is there to be held (measured: single-client p50
0.26 ms lower with the ONNX int8 MiniLM, whose sentence encodes in about 1 ms;
bench/results/serve_inline.md).

Fairness: requests take turns. Each micro-batch is led by the next request in arrival order
after the one that led the previous batch (round robin), and is filled one text per request in
turn among the requests of the same kind (a batch led by a short text leaves out texts over
twice its length), so a request of 2,048 long texts cannot hold a small request behind it: a text waits at most for the batch already encoding when it arrived plus its own
batch, each at most ``max_batch_tokens`` padded tokens (plus ``max_wait_s``), whatever else is queued.
With ``max_batch_s`` a batch is also kept to about that many seconds of encoding: its padded tokens
are capped at ``max_batch_s`` x the encoder's measured speed (padded tokens per second, a moving
average of the batches so far), so on a slow or loaded CPU a batch of long texts cannot hold a
small request behind it for many seconds (the cap never goes below ``_MIN_BUDGET`` tokens, and a
single text always runs).
A request whose client went away has its queued texts dropped, never encoded.

Backpressure: more than ``max_queue`` texts waiting or encoding -> ``QueueFull``
(HTTP 429); a text not started within ``queue_timeout_s`` -> ``QueueTimeout``
(HTTP 503); a stopped batcher -> ``BatcherClosed`` (HTTP 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embforge.model.heads import HEADS
from embforge.serve.heads import order_heads
from embforge.serve.metrics import Metrics
from embforge.types import HEADS as BGE_M3_HEADS
from embforge.types import Embeddings

_SHORT = 32  # tokens: texts this short always share a batch
_MIN_BUDGET = 1024  # padded tokens: the time cap never makes batches smaller than this
_EMA = 0.3  # weight of the newest batch in the speed estimate

__all__ = ["DynamicBatcher", "Row", "QueueFull", "QueueTimeout", "BatcherClosed"]

# encode_fn(inputs, role, heads, max_length) -> Embeddings, called in the worker thread; the
# inputs of one call are all texts or all token-id lists.
EncodeFn = Callable[[list[Any], str, tuple[str, ...], "int | None"], Embeddings]


#: The current request's arrival mark ([1] until it reaches submit()); set by ``on_the_way``.
_ARRIVAL: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("embforge_arrival", default=None)


class QueueFull(Exception):
    """The queue holds ``max_queue`` texts already."""


class QueueTimeout(Exception):
    """A text waited longer than ``queue_timeout_s`` before its batch started."""


class BatcherClosed(Exception):
    """The batcher is stopped (server shutting down)."""


@dataclass(frozen=True)
class Row:
    """One text's outputs (numpy): dense (D,) at full dim, sparse {id: weight},
    multivector (T_i, M), and plugin heads' values in ``extra`` (by head name)."""

    dense: np.ndarray | None = None
    sparse: dict[int, float] | None = None
    multivector: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, head: str) -> Any:
        """This text's value of ``head`` (None if not computed)."""
        return getattr(self, head) if head in BGE_M3_HEADS else self.extra.get(head)


@dataclass
class _Item:
    text: str | list[int]  # a text or a token-id input
    tokens: int
    key: tuple[str, int | None, bool]  # role, max length, token ids?
    heads: frozenset[str]
    future: asyncio.Future
    request: int  # which submit() call: the unit of round-robin fairness
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Token-budget micro-batcher.

    Args:
        encode_fn: ``(texts, role, heads, max_length) -> Embeddings``; runs in a thread.
        max_batch_tokens: budget of padded tokens per batch (one longer text runs alone).
        max_batch_size: texts per batch at most.
        max_wait_s: how long the first queued text waits for more.
        max_batch_s: seconds of encoding per batch to aim for (None: no time cap); see above.
        max_inline_s: a lone text predicted to encode within this many seconds runs on the event
            loop's thread (see above); 0 = always in the encode thread.
        max_queue: texts waiting or encoding at most; more -> ``QueueFull``.
        queue_timeout_s: a text not started by then fails with ``QueueTimeout``.
        metrics: where queue depth and batch sizes are recorded.
    """

    def __init__(
        self,
        encode_fn: EncodeFn,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 256,
        max_wait_s: float = 0.005,
        max_batch_s: float | None = None,
        max_inline_s: float = 0.0,
        max_queue: int = 4096,
        queue_timeout_s: float = 60.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.encode_fn = encode_fn
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_batch_s = max_batch_s
        self.speed: float | None = None  # padded tokens per second of encoding (moving average)
        self.max_inline_s = max_inline_s
        self.lone_rate: float | None = None  # seconds per token of lone texts (moving average)
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.metrics = metrics or Metrics()
        self._queue: deque[_Item] = deque()
        self._pending = 0  # texts submitted and not finished (queued + encoding)
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = True
        self.arriving = 0  # requests the server accepted that have not reached submit() yet (app.py)
        self._requests = 0  # submit() calls so far (request numbers)
        self._leader = -1  # the request that led the last batch
        self._stale_check_s = min(0.25, max(queue_timeout_s / 4, 0.01))

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        if self._task is not None:
            return
        self._closed = False
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embforge-encode")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="embforge-batcher")

    async def stop(self) -> None:
        self._closed = True
        while self._queue:
            item = self._queue.popleft()
            self._finish(item, exc=BatcherClosed("the server is shutting down"))
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @contextlib.contextmanager
    def on_the_way(self) -> Iterator[None]:
        """Count the request running in this context (and the tasks it starts) as ``arriving``
        until it calls ``submit`` or the block ends, whichever comes first."""
        mark = [1]
        self.arriving += 1
        token = _ARRIVAL.set(mark)
        try:
            yield
        finally:
            _ARRIVAL.reset(token)
            self._arrived(mark)

    def _arrived(self, mark: list[int] | None) -> None:
        if mark is not None and mark[0]:
            mark[0] = 0
            self.arriving -= 1

    @property
    def depth(self) -> int:
        """Texts waiting or being encoded."""
        return self._pending

    # ----------------------------------------------------------------- submit
    async def submit(
        self,
        texts: Sequence[Any],
        tokens: Sequence[int],
        *,
        role: str,
        heads: Sequence[str],
        max_length: int | None = None,
    ) -> list[Row]:
        """Queue ``texts`` (texts or token-id lists, with their token counts) and wait for their rows.

        Cancelling the caller (the client went away) drops the texts not yet encoding."""
        self._arrived(_ARRIVAL.get())
        if self._closed or self._wakeup is None:
            self.metrics.rejected.inc(len(texts), reason="closed")
            raise BatcherClosed("the server is not running or shutting down")
        if self._pending + len(texts) > self.max_queue:
            self.metrics.rejected.inc(len(texts), reason="queue_full")
            raise QueueFull(
                f"the queue holds {self._pending} of at most {self.max_queue} texts and this request "
                f"adds {len(texts)}"
            )
        loop = asyncio.get_running_loop()
        self._requests += 1
        items = [
            _Item(
                t,
                int(n),
                (role, max_length, isinstance(t, list)),
                frozenset(heads),
                loop.create_future(),
                self._requests,
            )
            for t, n in zip(texts, tokens)
        ]
        if self._pending == 0 and self._inline(items):  # idle: encode here, no queue or task switch
            self._pending = 1
            self._leader = items[0].request
            self._encode_inline(items)
            return [items[0].future.result()]
        self._queue.extend(items)
        self._pending += len(items)
        self.metrics.queue_depth.set(self._pending)
        self._wakeup.set()
        return list(await asyncio.gather(*(it.future for it in items)))

    # ----------------------------------------------------------------- worker
    def _finish(self, item: _Item, row: Row | None = None, exc: BaseException | None = None) -> None:
        self._pending -= 1
        self.metrics.queue_depth.set(self._pending)
        if item.future.done():  # cancelled: the client went away
            return
        if exc is not None:
            item.future.set_exception(exc)
        else:
            item.future.set_result(row)

    def _select(self) -> tuple[list[_Item], bool]:
        """The next batch and whether it is full: led by the next request after the last leader
        (round robin in arrival order), filled one text per request in turn among the requests
        of the leader's kind, FIFO within a request, within the token and size budgets; texts
        over twice the leader's length (and ``_SHORT``) wait for a turn of their own."""
        by_request: dict[int, deque[_Item]] = {}
        for it in self._queue:
            by_request.setdefault(it.request, deque()).append(it)
        order = sorted(by_request)
        later = [r for r in order if r > self._leader]
        lead = later[0] if later else order[0]
        key = by_request[lead][0].key
        turns = [by_request[r] for r in order[order.index(lead) :] + order[: order.index(lead)]]
        turns = [q for q in turns if q[0].key == key]
        # a short leader does not wait for long texts' padding: texts up to 2x its length join
        cap = 2 * max(by_request[lead][0].tokens, _SHORT)
        budget = self.budget
        batch: list[_Item] = []
        longest, full = 0, False
        while turns and not full:
            for q in list(turns):
                it = q[0]
                new_longest = max(longest, it.tokens)
                if batch and ((len(batch) + 1) * new_longest > budget or it.tokens > cap):
                    turns.remove(q)  # this request's next text does not fit; others may
                    full = full or it.tokens <= cap
                    continue
                batch.append(q.popleft())
                longest = new_longest
                if not q:
                    turns.remove(q)
                if len(batch) >= self.max_batch_size:
                    full = True
                    break
        full = full or len(batch) * longest >= budget
        return batch, full

    @property
    def budget(self) -> int:
        """Padded tokens the next batch may hold: ``max_batch_tokens``, capped at ``max_batch_s``
        seconds of encoding at the measured speed (once there is a measurement)."""
        if self.max_batch_s is None or self.speed is None:
            return self.max_batch_tokens
        return int(min(self.max_batch_tokens, max(_MIN_BUDGET, self.speed * self.max_batch_s)))

    def _measured(self, padded: int, seconds: float) -> None:
        """Fold one batch's encoding speed into the moving average (tiny batches say little)."""
        if padded < _MIN_BUDGET // 4 or seconds <= 0:
            return
        now = padded / seconds
        self.speed = now if self.speed is None else (1 - _EMA) * self.speed + _EMA * now

    def _drop_stale(self) -> None:
        now = time.monotonic()
        keep: deque[_Item] = deque()
        for it in self._queue:
            if it.future.done():  # cancelled: the client went away
                self.metrics.rejected.inc(reason="disconnected")
                self._finish(it)
            elif now - it.enqueued > self.queue_timeout_s:
                self.metrics.rejected.inc(reason="timeout")
                self._finish(
                    it,
                    exc=QueueTimeout(f"no encoder capacity within {self.queue_timeout_s:g} s; retry later"),
                )
            else:
                keep.append(it)
        self._queue = keep

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_stale()
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._queue[0].enqueued + self.max_wait_s
            batch, full = self._select()
            # wait for company only while another request is on its way: a lone request on an idle
            # encoder starts at once (max_wait_s would be most of its latency: a sentence encodes in ~2 ms)
            while not full and self.arriving > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
                self._drop_stale()
                if not self._queue:
                    break
                batch, full = self._select()
            if not self._queue:
                continue
            batch, _ = self._select()
            self._leader = batch[0].request
            taken = {id(it) for it in batch}
            self._queue = deque(it for it in self._queue if id(it) not in taken)
            if self._inline(batch):
                self._encode_inline(batch)
            else:
                await self._encode(batch)

    def _inline(self, batch: list[_Item]) -> bool:
        """Encode ``batch`` on the event loop's thread: one text, nothing else queued or on its way,
        and its encode predicted within ``max_inline_s`` (never before a lone text was measured)."""
        if len(batch) != 1 or self._queue or self.arriving or self.lone_rate is None:
            return False
        return self.lone_rate * batch[0].tokens <= self.max_inline_s

    def _call_args(self, batch: list[_Item]) -> tuple[list[Any], str, tuple[str, ...], int | None]:
        """``encode_fn``'s arguments for ``batch``, with the batch counted in the metrics."""
        role, max_length, _ = batch[0].key
        self.metrics.batch_size.observe(len(batch))
        self.metrics.encoder_texts.inc(len(batch))
        self.metrics.batch_tokens.observe(len(batch) * max(it.tokens for it in batch))
        return [it.text for it in batch], role, order_heads(h for it in batch for h in it.heads), max_length

    def _encoded(
        self, batch: list[_Item], emb: Embeddings | None, exc: BaseException | None, seconds: float
    ) -> None:
        """Deliver a finished batch's rows (or its error) and fold its time into the estimates."""
        self.metrics.batch_seconds.observe(seconds)
        if exc is None:
            assert emb is not None
            try:
                rows = split_rows(emb, len(batch))
            except Exception as e:
                exc = e
        if exc is not None:  # delivered to every request of the batch
            for it in batch:
                self._finish(it, exc=exc)
            return
        longest = max(it.tokens for it in batch)
        self._measured(len(batch) * longest, seconds)
        if len(batch) == 1 and seconds > 0:
            rate = seconds / max(longest, 1)
            self.lone_rate = rate if self.lone_rate is None else (1 - _EMA) * self.lone_rate + _EMA * rate
        for it, row in zip(batch, rows):
            self._finish(it, row=row)

    def _encode_inline(self, batch: list[_Item]) -> None:
        args = self._call_args(batch)
        t0 = time.perf_counter()
        try:
            emb, exc = self.encode_fn(*args), None
        except Exception as e:
            emb, exc = None, e
        self._encoded(batch, emb, exc, time.perf_counter() - t0)

    async def _encode(self, batch: list[_Item]) -> None:
        args = self._call_args(batch)
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor, self.encode_fn, *args)
            while not (await asyncio.wait({fut}, timeout=self._stale_check_s))[0]:
                self._drop_stale()  # time out queued texts even while a long batch runs
        except asyncio.CancelledError:  # stop() while encoding
            self.metrics.batch_seconds.observe(time.perf_counter() - t0)
            for it in batch:
                self._finish(it, exc=BatcherClosed("the server is shutting down"))
            raise
        exc = fut.exception()
        self._encoded(batch, None if exc else fut.result(), exc, time.perf_counter() - t0)


def split_rows(emb: Embeddings, n: int) -> list[Row]:
    """Per-text rows of a batch's ``Embeddings`` (checks the encoder returned n of each)."""
    outputs = emb.outputs
    for name, x in outputs.items():
        if len(x) != n:
            raise RuntimeError(f"the encoder returned {len(x)} {name} outputs for {n} texts")
    rows = []
    for i in range(n):
        values = {h: HEADS.get(h).row(x, i) for h, x in outputs.items()}
        builtin = {h: values.pop(h) for h in BGE_M3_HEADS if h in values}
        rows.append(Row(**builtin, extra=values))
    return rows
