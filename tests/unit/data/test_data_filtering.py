"""Consistency filtering and exact dedup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embforge.data import Pair, Triple, read_records, write_jsonl
from embforge.data.dedup import DedupStats, dedup_file, dedup_records
from embforge.data.filtering import FilterConfig, FilterStats, consistency_ranks, filter_file, filter_records
from embforge.data.teachers import DenseTeacher
from embforge.errors import ConfigError


def test_ranks_match_brute_force_across_tiles():
    rng = np.random.default_rng(0)
    q, d = rng.standard_normal((97, 8)), rng.standard_normal((97, 8))
    s = q @ d.T
    expected = (s > np.diag(s)[:, None]).sum(1)
    assert consistency_ranks(q, d, query_block=10, doc_block=7).tolist() == expected.tolist()


def _planted(n: int = 60, dim: int = 32):
    """Good pairs: query = its doc + small noise. Pair 'bad': a query about something else."""
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((n, dim)).astype(np.float32)
    vec = {f"doc{i}": docs[i] for i in range(n)}
    vec.update({f"query{i}": docs[i] + 0.1 * rng.standard_normal(dim).astype(np.float32) for i in range(n)})
    vec["off-topic query"] = -docs[5]  # its document is the worst match
    pairs = [Pair(f"query{i}", f"doc{i}", source="a" if i % 2 else "b") for i in range(n)]
    pairs[5] = Pair("off-topic query", "doc5", source="a")
    return pairs, DenseTeacher(lambda texts, role: np.stack([vec[t] for t in texts]))


def test_keeps_planted_good_pair_drops_mismatched_one():
    pairs, teacher = _planted()
    stats = FilterStats()
    out = list(filter_records(pairs, teacher, FilterConfig(shard_size=25, top_k=3, by_source=False), stats))
    assert [r.query for r, _, _ in out] == [p.query for p in pairs]  # input order
    kept = {r.query: (k, rank) for r, k, rank in out}
    assert kept["query7"] == (True, 0)
    assert kept["off-topic query"][0] is False and kept["off-topic query"][1] >= 20  # rank in its shard of 25
    assert stats.shards == 3 and sum(stats.kept.values()) == 59 and stats.dropped == {"a": 1}
    assert "| a | 29 | 1 | 96.7 |" in stats.table()


def test_by_source_shards_hold_one_source():
    pairs, teacher = _planted()
    seen_shards = []

    def embed(texts, role):
        if role == "query":
            seen_shards.append({t[-1] for t in texts if t.startswith("query")})
        return teacher.embed(texts, role)

    stats = FilterStats()
    out = list(filter_records(pairs, DenseTeacher(embed), FilterConfig(shard_size=20, top_k=3), stats))
    assert stats.shards == 4  # a: 20 + 10, b: 20 + 10
    odd, even = set("13579"), set("02468")  # source a = odd i, b = even i
    assert all(s <= odd or s <= even for s in seen_shards)
    assert sorted(r.query for r, _, _ in out) == sorted(p.query for p in pairs)
    assert stats.dropped == {"a": 1}


def test_filter_file_writes_kept_and_dropped(tmp_path):
    pairs, teacher = _planted()
    write_jsonl(tmp_path / "in.jsonl", pairs)
    stats = filter_file(
        tmp_path / "in.jsonl",
        tmp_path / "out.jsonl",
        teacher,
        FilterConfig(top_k=20),
        tmp_path / "drop.jsonl",
    )
    assert len(list(read_records(tmp_path / "out.jsonl"))) == 59
    dropped = [json.loads(x) for x in (tmp_path / "drop.jsonl").read_text().splitlines()]
    assert [d["query"] for d in dropped] == ["off-topic query"] and dropped[0]["rank"] >= 20
    assert stats.shards == 2  # one per source


def test_filter_config_errors():
    with pytest.raises(ConfigError, match="shard_size=0"):
        FilterConfig(shard_size=0)


def test_dedup_streams_and_reports(tmp_path):
    recs = [
        Pair("q", "p", source="x"),
        Pair("q", "p", source="y"),  # same texts, other source: a duplicate
        Pair("q", "p2"),
        Triple("q", "p", "n"),
        Triple("q", "p", "n", lang="en"),
    ]
    st = DedupStats()
    got = list(dedup_records(iter(recs), st))
    assert got == [recs[0], recs[2], recs[3]] and st.duplicates == 2
    write_jsonl(tmp_path / "in.jsonl", recs)
    st = dedup_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "dups.jsonl")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
    assert len((tmp_path / "dups.jsonl").read_text().splitlines()) == 2
    assert st.summary() == "5 records, 2 exact duplicates removed, 3 kept"


def test_duplicate_documents_do_not_outrank_each_other():
    rng = np.random.default_rng(2)
    d = rng.standard_normal((5, 16)).astype(np.float32)
    d[3] = d[1]  # the same document for two queries
    q = d + 0.01
    assert consistency_ranks(q, d, doc_block=2).tolist() == [0, 0, 0, 0, 0]
