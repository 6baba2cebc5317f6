"""Sharded encoding (embforge.model.sharded): any process split writes the same shards as one process,
a re-run skips finished shards, and the vectors equal ``Encoder.encode``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embforge.data.shards import iter_shards, read_manifest, shard_name
from embforge.errors import DataError
from embforge.model.sharded import encode_to_shards

HEADS = ("dense", "sparse", "multivector")
WORDS = "the dog runs fast across a green field while birds sing over quiet old river banks".split()


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"_id": f"d{i}", "title": "T" * (i % 2), "text": " ".join(WORDS[: 3 + (i * 7) % 13])})
        for i in range(23)
    ]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.glob("shard-*.parquet"))}


def test_two_ranks_write_the_shards_of_one_process(tiny_m3, corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    rep = encode_to_shards(tiny_m3, corpus, one, HEADS, 5, rank=0, world=1)
    assert rep.complete and rep.encoded == [0, 1, 2, 3, 4] and rep.rows == 23
    r1 = encode_to_shards(tiny_m3, corpus, two, HEADS, 5, rank=1, world=2)
    assert r1.encoded == [1, 3] and not r1.complete and not (two / "manifest.json").exists()
    r0 = encode_to_shards(tiny_m3, corpus, two, HEADS, 5, rank=0, world=2)
    assert r0.encoded == [0, 2, 4] and r0.complete
    assert _files(one) == _files(two)  # byte-identical shards
    m1, m2 = read_manifest(one), read_manifest(two)
    assert m1 == m2 and m1["rows"] == 23

    texts = [json.loads(x) for x in corpus.read_text().splitlines()]
    want = tiny_m3.encode([f"{t['title']} {t['text']}".strip() for t in texts], heads=HEADS)
    shards = list(iter_shards(one))
    assert [i for s in shards for i in s.ids] == [t["_id"] for t in texts]
    dense = np.concatenate([s.embeddings.dense for s in shards])
    np.testing.assert_allclose(dense, want.dense, atol=1e-5)
    got_sparse = [r for s in shards for r in s.embeddings.sparse.to_dicts()]
    for g, w in zip(got_sparse, want.sparse.to_dicts()):
        assert g.keys() == w.keys() and list(g.values()) == pytest.approx(list(w.values()), abs=1e-5)
    mv = [m for s in shards for m in s.embeddings.multivector]
    for g, w in zip(mv, want.multivector):
        np.testing.assert_allclose(g, w, atol=2e-3)  # float16 storage


def test_rerun_skips_finished_shards_and_redoes_missing_ones(tiny_m3, corpus, tmp_path):
    out = tmp_path / "out"
    encode_to_shards(tiny_m3, corpus, out, ("dense",), 5, rank=0, world=1)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    (out / shard_name(3)).unlink()
    (out / "manifest.json").unlink()
    (out / f".{shard_name(3)}.tmp-99999").write_bytes(b"half a file from a killed process")
    rep = encode_to_shards(tiny_m3, corpus, out, ("dense",), 5, rank=0, world=1)
    assert rep.encoded == [3] and rep.skipped == [0, 1, 2, 4] and rep.complete
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert {k: v for k, v in after.items() if k != shard_name(3)} == {
        k: v for k, v in before.items() if k != shard_name(3)
    }  # finished shards untouched
    assert not list(out.glob(".*tmp*"))
    # a resume with another process count reuses the same shard boundaries
    (out / shard_name(0)).unlink()
    assert encode_to_shards(tiny_m3, corpus, out, ("dense",), 5, rank=0, world=3).encoded == [0]
    with pytest.raises(DataError, match="another job \\(heads"):
        encode_to_shards(tiny_m3, corpus, out, HEADS, 5, rank=0, world=1)
