"""The dynamic batcher alone (asyncio, no HTTP), the metrics text and the output encodings."""

from __future__ import annotations

import asyncio
import base64
import doctest
import threading

import numpy as np
import pytest

from embforge.serve.batcher import BatcherClosed, DynamicBatcher, QueueFull
from embforge.serve.metrics import Metrics
from embforge.types import Embeddings


class Recorder:
    """encode_fn that records its batches; dense = [index of text, tokens]."""

    def __init__(self, gate=None):
        self.batches = []
        self.gate = gate

    def __call__(self, texts, role, heads, max_length):
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append((list(texts), role, heads))
        dense = np.array([[float(t.split(":")[0]), 1.0] for t in texts], dtype=np.float32)
        return Embeddings(dense=dense)


def _run(coro):
    return asyncio.run(coro)


def test_token_budget_bounds_every_batch_and_order_is_kept():
    rec = Recorder()
    tokens = [3, 9, 2, 2, 7, 1, 12, 4, 4, 4]

    async def main():
        b = DynamicBatcher(rec, max_batch_tokens=12, max_batch_size=3, max_wait_s=0.05)
        await b.start()
        texts = [f"{i}:t" for i in range(len(tokens))]
        rows = await b.submit(texts, tokens, role="document", heads=("dense",))
        await b.stop()
        return rows

    rows = _run(main())
    assert [int(r.dense[0]) for r in rows] == list(range(len(tokens)))  # each text gets its own row
    seen = []
    for texts, _, _ in rec.batches:
        idx = [int(t.split(":")[0]) for t in texts]
        seen += idx
        longest = max(tokens[i] for i in idx)
        assert len(idx) <= 3
        assert len(idx) == 1 or len(idx) * longest <= 12
    assert sorted(seen) == list(range(len(tokens)))
    assert seen == list(range(len(tokens)))  # FIFO
    assert len(rec.batches) >= 4  # 12 tokens alone, budget forced splits


def test_roles_and_heads_batching():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_tokens=1000, max_wait_s=0.05)
        await b.start()
        r = await asyncio.gather(
            b.submit(["0:a", "1:b"], [2, 2], role="query", heads=("dense",)),
            b.submit(["2:c"], [2], role="document", heads=("dense",)),
            b.submit(["3:d"], [2], role="query", heads=("dense", "sparse")),
        )
        await b.stop()
        return r

    _run(main())
    by_role = {role: (texts, heads) for texts, role, heads in rec.batches}
    assert len(rec.batches) == 2
    # union of heads; requests take turns within a batch (round robin), FIFO within a request
    assert by_role["query"] == (["0:a", "3:d", "1:b"], ("dense", "sparse"))
    assert by_role["document"][0] == ["2:c"]


def test_max_wait_collects_later_arrivals():
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_batch_tokens=1000, max_wait_s=0.3)
        await b.start()

        async def late(i):
            with b.on_the_way():  # accepted by the server, still parsing: the batcher waits for it
                await asyncio.sleep(0.02 * i)
                return await b.submit([f"{i}:x"], [3], role="document", heads=("dense",))

        await asyncio.gather(*(late(i) for i in range(5)))
        await b.stop()

    _run(main())
    assert len(rec.batches) == 1 and len(rec.batches[0][0]) == 5


def test_queue_full_and_closed():
    gate = threading.Event()
    rec = Recorder(gate)
    metrics = Metrics()

    async def main():
        b = DynamicBatcher(rec, max_queue=3, max_wait_s=0, metrics=metrics)
        with pytest.raises(BatcherClosed):
            await b.submit(["0:a"], [1], role="document", heads=("dense",))
        await b.start()
        first = asyncio.ensure_future(b.submit(["0:a", "1:b"], [1, 1], role="document", heads=("dense",)))
        await asyncio.sleep(0.05)
        assert b.depth == 2
        with pytest.raises(QueueFull, match="holds 2 of at most 3 texts and this request adds 2"):
            await b.submit(["2:c", "3:d"], [1, 1], role="document", heads=("dense",))
        third = asyncio.ensure_future(b.submit(["4:e"], [1], role="document", heads=("dense",)))
        await asyncio.sleep(0.05)
        gate.set()
        await first
        await third
        assert b.depth == 0
        await b.stop()
        with pytest.raises(BatcherClosed):
            await b.submit(["0:a"], [1], role="document", heads=("dense",))

    _run(main())
    assert metrics.rejected.get(reason="queue_full") == 2
    assert metrics.queue_depth.get() == 0


def test_encoder_error_reaches_only_its_batch_and_worker_survives():
    calls = []

    def enc(texts, role, heads, max_length):
        calls.append(texts)
        if "bad" in texts:
            raise RuntimeError("encoder broke")
        return Embeddings(dense=np.ones((len(texts), 2), np.float32))

    async def main():
        b = DynamicBatcher(enc, max_wait_s=0)
        await b.start()
        with pytest.raises(RuntimeError, match="encoder broke"):
            await b.submit(["bad"], [1], role="document", heads=("dense",))
        rows = await b.submit(["good"], [1], role="document", heads=("dense",))
        await b.stop()
        return rows

    assert len(_run(main())) == 1


def test_wrong_row_count_from_encoder_is_an_error():
    def enc(texts, role, heads, max_length):
        return Embeddings(dense=np.ones((len(texts) + 1, 2), np.float32))

    async def main():
        b = DynamicBatcher(enc, max_wait_s=0)
        await b.start()
        try:
            await b.submit(["a"], [1], role="document", heads=("dense",))
        finally:
            await b.stop()

    with pytest.raises(RuntimeError, match="returned 2 dense outputs for 1 texts"):
        _run(main())


def test_cancelled_request_is_skipped():
    gate = threading.Event()
    rec = Recorder(gate)

    async def main():
        b = DynamicBatcher(rec, max_wait_s=0)
        await b.start()
        blocker = asyncio.ensure_future(b.submit(["0:a"], [1], role="document", heads=("dense",)))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(["1:b"], [1], role="document", heads=("dense",)))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client disconnected while queued
        gate.set()
        await blocker
        rows = await b.submit(["2:c"], [1], role="document", heads=("dense",))
        assert b.depth == 0
        await b.stop()
        return rows

    _run(main())
    assert [t for batch, _, _ in rec.batches for t in batch] == ["0:a", "2:c"]


def test_metrics_text_format():
    m = Metrics()
    m.requests.inc(endpoint="/v1/embeddings", code="200")
    m.requests.inc(2, endpoint="/v1/embeddings", code="200")
    m.latency.observe(0.003, endpoint="/v1/embeddings")
    m.latency.observe(7.0, endpoint="/v1/embeddings")
    m.queue_depth.set(5)
    text = m.render()
    assert "# TYPE embforge_requests_total counter" in text
    assert 'embforge_requests_total{endpoint="/v1/embeddings",code="200"} 3' in text
    assert 'embforge_request_latency_seconds_bucket{endpoint="/v1/embeddings",le="0.0025"} 0' in text
    assert 'embforge_request_latency_seconds_bucket{endpoint="/v1/embeddings",le="0.005"} 1' in text
    assert 'embforge_request_latency_seconds_bucket{endpoint="/v1/embeddings",le="10"} 2' in text
    assert 'embforge_request_latency_seconds_bucket{endpoint="/v1/embeddings",le="+Inf"} 2' in text
    assert 'embforge_request_latency_seconds_sum{endpoint="/v1/embeddings"} 7.003' in text
    assert "embforge_queue_depth 5" in text
    assert "embforge_batch_size_count 0" in text  # unlabelled histograms render when empty
    with pytest.raises(KeyError, match="takes labels"):
        m.requests.inc(endpoint="x")


def test_output_doctests_and_base64_is_little_endian_float32():
    import embforge.serve.output as out

    assert doctest.testmod(out).failed == 0
    v = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    s = out.encode_vector(v, "float32", "base64")
    assert base64.b64decode(s) == v.astype("<f4").tobytes()
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(s), "<f4"), v)
    with pytest.raises(ValueError, match="choose from"):
        out.quantize(v, "int4")


def test_float_vectors_render_as_json_numbers_that_give_back_every_float32():
    """Float outputs stay float32 arrays until ``render_json`` writes them (9 significant digits):
    parsed back they equal the float32 values bit for bit; NaN is refused like json.dumps does."""
    import json

    import embforge.serve.output as out

    rng = np.random.default_rng(0)
    v = np.concatenate([rng.standard_normal(500), [0.0, -0.0, 1.0, 1e-30, -3.4e38, 1e-45]]).astype(np.float32)
    m = rng.standard_normal((3, 4)).astype(np.float32)
    body = {
        "data": [
            {
                "embedding": out.encode_vector(v, "float32", "float"),
                "mv": out.encode_matrix(m, "float32", "float"),
            }
        ],
        "usage": {"n": 1},
    }
    got = json.loads(asyncio.run(out.render_json(body)))
    np.testing.assert_array_equal(np.float32(got["data"][0]["embedding"]), v)
    np.testing.assert_array_equal(np.float32(got["data"][0]["mv"]), m)
    assert got["usage"] == {"n": 1}
    assert out.encode_vector(v, "int8", "float") == out.quantize(v, "int8").tolist()  # ints: plain lists
    with pytest.raises(ValueError):
        asyncio.run(out.render_json({"data": [{"embedding": np.float32([1.0, np.nan])}]}))


def test_lone_request_on_an_idle_encoder_does_not_wait_for_company():
    """Nobody else on the way (``arriving`` 0): the batch starts at once, not after max_wait_s
    (60 s here: a wait would time the test out); the count is back to 0 after submit."""
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_wait_s=60.0)
        await b.start()
        with b.on_the_way():
            assert b.arriving == 1
            rows = await asyncio.wait_for(b.submit(["0:a"], [3], role="document", heads=("dense",)), 10)
            assert b.arriving == 0  # counted off at submit, not at the end of the block
        assert b.arriving == 0
        await b.stop()
        return rows

    assert len(_run(main())) == 1 and len(rec.batches) == 1


def test_batch_waits_for_a_request_on_its_way_and_takes_it():
    """While another request is on its way (accepted, not yet submitted) the first text waits up to
    max_wait_s for it, and both share one batch; a request that leaves before submitting stops
    counting when its block ends."""
    rec = Recorder()

    async def main():
        b = DynamicBatcher(rec, max_wait_s=60.0)
        await b.start()

        async def later():
            with b.on_the_way():
                await asyncio.sleep(0.05)  # parsing, tokenizing...
                return await b.submit(["1:b"], [3], role="document", heads=("dense",))

        second = asyncio.ensure_future(later())
        await asyncio.sleep(0)  # the second request is on its way
        assert b.arriving == 1
        first = await asyncio.wait_for(b.submit(["0:a"], [3], role="document", heads=("dense",)), 10)
        await second
        with b.on_the_way():
            pass  # a request refused before submit (e.g. invalid): no longer on its way
        assert b.arriving == 0
        await b.stop()
        return first

    _run(main())
    assert [t for t, _, _ in rec.batches] == [["0:a", "1:b"]]


class ThreadRecorder(Recorder):
    """Recorder that also notes which thread ran each batch and can be slowed down."""

    def __init__(self, seconds=0.0):
        super().__init__()
        self.threads = []
        self.seconds = seconds

    def __call__(self, texts, role, heads, max_length):
        self.threads.append(threading.get_ident())
        if self.seconds:
            threading.Event().wait(self.seconds)
        return super().__call__(texts, role, heads, max_length)


def test_lone_fast_text_is_encoded_on_the_loop_thread_after_one_measurement():
    rec = ThreadRecorder()

    async def main():
        b = DynamicBatcher(rec, max_wait_s=0.0, max_inline_s=0.05)
        await b.start()
        loop_thread = threading.get_ident()
        selects, select = [], b._select
        b._select = lambda: (selects.append(1), select())[1]  # the worker task's batching step
        rows = [await b.submit(["0:x"], [4], role="query", heads=("dense",))]
        worker_steps = len(selects)
        rows += [await b.submit([f"{i}:x"], [4], role="query", heads=("dense",)) for i in (1, 2)]
        assert worker_steps >= 1 and len(selects) == worker_steps  # 1, 2: inside submit, no worker step
        rec.seconds = 0.05
        pair = asyncio.ensure_future(b.submit(["7:y", "8:y"], [4, 4], role="query", heads=("dense",)))
        await asyncio.sleep(0.01)  # the pair is encoding in the thread
        depth_then = b.depth
        lone = await b.submit(["9:z"], [4], role="query", heads=("dense",))
        both = await pair
        await b.stop()
        return loop_thread, rows, both, lone, b, depth_then

    loop_thread, rows, both, lone, b, depth_then = _run(main())
    assert [int(r[0].dense[0]) for r in rows] == [0, 1, 2]  # same rows either way
    assert [int(r.dense[0]) for r in both] == [7, 8] and int(lone[0].dense[0]) == 9
    assert depth_then == 2
    # the first lone text is measured in the encode thread; the next two are encoded inside
    # submit (idle server); two texts of one request go to the encode thread; a lone text that
    # came while they encoded waited in the queue and ran inline after them (the worker's path)
    assert rec.threads[0] != loop_thread
    assert rec.threads[1:3] == [loop_thread, loop_thread]
    assert rec.threads[3] != loop_thread and [t for t, _, _ in rec.batches][3] == ["7:y", "8:y"]
    assert rec.threads[4] == loop_thread and rec.batches[4][0] == ["9:z"]
    assert b.lone_rate is not None and b.lone_rate > 0
    assert "embforge_encoder_texts_total 6" in b.metrics.render()  # inline batches are counted too
    assert b.depth == 0


def test_slow_or_disabled_inline_stays_in_the_encode_thread():
    for seconds, max_inline_s in ((0.02, 0.005), (0.0, 0.0)):
        rec = ThreadRecorder(seconds)

        async def main(rec=rec, max_inline_s=max_inline_s):
            b = DynamicBatcher(rec, max_wait_s=0.0, max_inline_s=max_inline_s)
            await b.start()
            for i in range(3):
                await b.submit([f"{i}:x"], [4], role="query", heads=("dense",))
            await b.stop()
            return threading.get_ident()

        loop_thread = _run(main())
        assert loop_thread not in rec.threads, (seconds, max_inline_s)


def test_inline_encoder_error_reaches_the_request_and_the_batcher_goes_on():
    class Flaky(ThreadRecorder):
        def __call__(self, texts, role, heads, max_length):
            if texts[0].endswith("boom"):
                self.threads.append(threading.get_ident())
                raise ValueError("encoder failed")
            return super().__call__(texts, role, heads, max_length)

    rec = Flaky()

    async def main():
        b = DynamicBatcher(rec, max_wait_s=0.0, max_inline_s=0.05)
        await b.start()
        await b.submit(["0:x"], [4], role="query", heads=("dense",))
        with pytest.raises(ValueError, match="encoder failed"):
            await b.submit(["1:boom"], [4], role="query", heads=("dense",))
        after = await b.submit(["2:x"], [4], role="query", heads=("dense",))
        await b.stop()
        return threading.get_ident(), after, b.depth

    loop_thread, after, depth = _run(main())
    assert rec.threads[1] == loop_thread  # the failing call ran inline
    assert int(after[0].dense[0]) == 2 and depth == 0


def test_a_request_on_its_way_keeps_a_lone_text_off_the_loop_and_they_share_a_batch():
    """A burst: the second request is on its way (head received) when the first submits, so the
    first is not encoded inline; it waits (max_wait_s) and both go to the encode thread together."""
    rec = ThreadRecorder()

    async def main():
        b = DynamicBatcher(rec, max_wait_s=0.5, max_inline_s=0.05)
        await b.start()
        await b.submit(["0:x"], [4], role="query", heads=("dense",))  # measured: inline from now on

        async def second():
            with b.on_the_way():
                await asyncio.sleep(0.02)  # reading its body
                return await b.submit(["2:x"], [4], role="query", heads=("dense",))

        task = asyncio.ensure_future(second())
        await asyncio.sleep(0)  # the second request's head is in: it is on its way
        first = await b.submit(["1:x"], [4], role="query", heads=("dense",))
        both = (first, await task)
        await b.stop()
        return threading.get_ident(), both

    loop_thread, (first, second) = _run(main())
    assert int(first[0].dense[0]) == 1 and int(second[0].dense[0]) == 2
    assert rec.batches[-1][0] == ["1:x", "2:x"]  # one batch
    assert rec.threads[-1] != loop_thread
