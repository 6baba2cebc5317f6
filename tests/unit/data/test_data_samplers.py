"""Samplers: one source per batch, proportional sources, length groups, same on every rank, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from embforge.data.samplers import SourceBatchSampler, bucket_batch_sizes
from embforge.errors import DataError


def _sources():
    return {"en": list(range(0, 400)), "ko": list(range(400, 500)), "de": list(range(500, 700))}


def test_one_source_per_batch_and_every_batch_once():
    s = SourceBatchSampler(_sources(), batch_size=10, seed=3)
    names = {i: n for n, idx in _sources().items() for i in idx}
    batches = s.epoch_batches(0)
    assert len(batches) == len(s) == 70
    for b in batches:
        assert len({names[int(i)] for i in b}) == 1
    flat = np.concatenate(batches)
    assert len(set(flat.tolist())) == 700  # each record once per epoch


def test_sources_in_proportion_to_size_and_interleaved():
    s = SourceBatchSampler(_sources(), batch_size=10, seed=3)
    order = s.source_of_batches(0)
    assert Counter(order) == {"en": 40, "de": 20, "ko": 10}
    # interleaved, not one source after another: the first 20 batches hold more than one source
    assert len(set(order[:20])) > 1


def test_length_groups_reduce_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=700)
    grouped = SourceBatchSampler(_sources(), 10, lengths=lengths, seed=1)
    plain = SourceBatchSampler(_sources(), 10, seed=1)

    def padding(sampler):
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in sampler.epoch_batches(0))

    assert padding(grouped) < 0.3 * padding(plain)


def test_same_batches_on_every_rank_and_epochs_differ():
    a = SourceBatchSampler(_sources(), 10, seed=7).epoch_batches(2)
    b = SourceBatchSampler(_sources(), 10, seed=7).epoch_batches(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = SourceBatchSampler(_sources(), 10, seed=7).epoch_batches(3)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_resume_position_continues_the_same_stream():
    full = SourceBatchSampler(_sources(), 10, seed=5)
    it = iter(full)
    ref = [next(it) for _ in range(85)]  # crosses an epoch boundary (70 per epoch)
    first = SourceBatchSampler(_sources(), 10, seed=5)
    it = iter(first)
    head = [next(it) for _ in range(30)]
    state = first.state_dict()
    resumed = SourceBatchSampler(_sources(), 10, seed=5)
    resumed.load_state_dict(state)
    it = iter(resumed)
    tail = [next(it) for _ in range(55)]
    assert all(np.array_equal(x, y) for x, y in zip(ref, head + tail))
    with pytest.raises(ValueError, match="does not match this run"):
        SourceBatchSampler(_sources(), 20, seed=5).load_state_dict(state)


def test_empty_and_too_small_sources_fail_clearly():
    with pytest.raises(DataError, match="empty data source.*ko"):
        SourceBatchSampler({"en": [1, 2], "ko": []}, 1)
    with pytest.raises(DataError, match=r"smaller than one batch of 10: ko \(3 records\)"):
        SourceBatchSampler({"en": list(range(20)), "ko": [20, 21, 22]}, 10)
    pooled = SourceBatchSampler({"en": list(range(20)), "ko": [20, 21, 22]}, 10, one_source_per_batch=False)
    assert len(pooled) == 2


# ------------------------------------------------------------------ length buckets (BGE M3 batching)
def _bucketed(seed: int = 0, multiple: int = 1):
    rng = np.random.default_rng(seed)
    # mostly short records, some long ones: the shape of a real mix with a few long documents
    lengths = np.concatenate(
        [rng.integers(10, 128, 600), rng.integers(129, 512, 80), rng.integers(513, 2048, 20)]
    )
    rng.shuffle(lengths)
    s = SourceBatchSampler(
        {"en": list(range(0, 500)), "de": list(range(500, 700))},
        32,
        lengths=lengths,
        seed=seed,
        buckets=[128, 512, 2048],
        multiple=multiple,
    )
    return s, lengths


def test_bucket_batch_sizes_keep_tokens_per_step_constant():
    assert bucket_batch_sizes([128, 512, 2048], 32) == [32, 8, 2]
    assert bucket_batch_sizes([128, 8192], 32, multiple=4) == [32, 4]  # never below one per process
    assert bucket_batch_sizes([100, 300], 30, multiple=4) == [28, 8]
    for bad in ([], [512, 128], [128, 128], [0, 10]):
        with pytest.raises(ValueError, match="increasing positive"):
            bucket_batch_sizes(bad, 32)


def test_buckets_give_each_batch_one_bucket_and_its_batch_size():
    s, lengths = _bucketed()
    bounds = np.array([128, 512, 2048])
    sizes = dict(zip(bounds.tolist(), bucket_batch_sizes(bounds.tolist(), 32)))
    batches = s.epoch_batches(0)
    assert len(batches) == len(s)
    for name, b in zip(s.source_of_batches(0), batches):
        bound = int(name.split("@")[1])
        assert len(b) == s.group_batch_sizes()[name] == sizes[bound]
        # every record of a batch fits its bucket's bound (the group's batch size was made for it)
        assert lengths[b].max() <= bound
    # token budget per step: batch size x bucket bound is the same for every bucket that got a batch
    assert {len(b) * int(n.split("@")[1]) for n, b in zip(s.source_of_batches(0), batches)} <= {4096}
    # each record at most once per epoch, and buckets of both sources are used
    flat = np.concatenate(batches)
    assert len(flat) == len(set(flat.tolist()))
    assert {n.split("@")[0] for n in s.source_of_batches(0)} == {"en", "de"}


def test_small_bucket_joins_the_next_longer_bucket():
    lengths = np.array([50] * 40 + [200] * 3 + [1000] * 10)  # bucket 512 has 3 records < its batch of 8
    s = SourceBatchSampler({"x": list(range(53))}, 32, lengths=lengths, buckets=[128, 512, 2048])
    sizes = s.group_batch_sizes()
    assert sizes == {"x@128": 32, "x@2048": 2}
    assert set(s.sources["x@2048"].tolist()) == set(range(40, 53))  # the 3 mid-length records moved up
    assert len(s) == 1 + 13 // 2


def test_buckets_same_on_every_rank_and_resumable():
    a, _ = _bucketed(seed=4, multiple=2)
    b, _ = _bucketed(seed=4, multiple=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch_batches(1), b.epoch_batches(1)))
    assert all(len(x) % 2 == 0 for x in a.epoch_batches(1))
    it = iter(a)
    ref = [next(it) for _ in range(len(a) + 5)]
    c, _ = _bucketed(seed=4, multiple=2)
    it_c = iter(c)
    [next(it_c) for _ in range(7)]
    d, _ = _bucketed(seed=4, multiple=2)
    d.load_state_dict(c.state_dict())
    it_d = iter(d)
    assert all(np.array_equal(next(it_d), ref[7 + k]) for k in range(len(a) - 2))


def test_buckets_need_lengths():
    with pytest.raises(ValueError, match="lengths"):
        SourceBatchSampler({"x": list(range(64))}, 32, buckets=[128, 512])
