"""Samplers: one source per batch, proportional sources, length groups, same on every rank, resume."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from embforge.data.samplers import SourceBatchSampler
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
