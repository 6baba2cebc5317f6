"""Shard files (embforge.data.shards): round trip, atomic writes, job checks, manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embforge.data.shards import (
    CorpusRow,
    check_job,
    embeddings_table,
    finalize,
    iter_corpus_rows,
    iter_shards,
    read_manifest,
    read_shard,
    shard_name,
    write_shard,
)
from embforge.errors import DataError
from embforge.types import Embeddings, SparseVectors


def _emb(n: int, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((n, 8)).astype(np.float32)
    rows = [
        {int(t): float(rng.random()) + 0.1 for t in rng.choice(50, size=1 + i % 4, replace=False)}
        for i in range(n)
    ]
    mv = [rng.standard_normal((1 + i % 5, 4)).astype(np.float32) for i in range(n)]
    return Embeddings(dense=dense, sparse=SparseVectors.from_dicts(rows, 50), multivector=mv)


def test_shard_round_trip_keeps_every_head(tmp_path):
    rows = [CorpusRow(f"d{i}", "T" if i % 2 else "", f"text {i}") for i in range(7)]
    emb = _emb(7)
    write_shard(tmp_path / shard_name(0), embeddings_table(rows, emb))
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000000.parquet"]  # no temp file left
    back = read_shard(tmp_path / shard_name(0))
    assert back.ids == [r.id for r in rows] and back.titles[1] == "T" and back.texts[6] == "text 6"
    np.testing.assert_array_equal(back.embeddings.dense, emb.dense)
    assert back.embeddings.sparse.to_dicts() == emb.sparse.to_dicts()  # float32 both ways: exact
    assert back.embeddings.sparse.vocab_size == 50
    for a, b in zip(back.embeddings.multivector, emb.multivector):
        np.testing.assert_array_equal(a, b.astype(np.float16).astype(np.float32))  # stored float16
    only = read_shard(tmp_path / shard_name(0), heads=["dense"], payload=False)
    assert only.embeddings.sparse is None and only.embeddings.multivector is None and only.texts == []


def test_missing_head_and_unreadable_shard_are_clear_errors(tmp_path):
    rows = [CorpusRow("a", "", "x")]
    write_shard(tmp_path / "s.parquet", embeddings_table(rows, Embeddings(dense=np.ones((1, 2), np.float32))))
    with pytest.raises(DataError, match="no 'sparse' head"):
        read_shard(tmp_path / "s.parquet", heads=["sparse"])
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable shard"):
        read_shard(tmp_path / "bad.parquet")


def test_job_settings_must_match_on_rerun(tmp_path):
    check_job(tmp_path, {"model": "a", "heads": ["dense"]})
    check_job(tmp_path, {"model": "a", "heads": ["dense"]})  # the same job: fine
    with pytest.raises(DataError, match="another job \\(model: 'a' there, 'b' now\\)"):
        check_job(tmp_path, {"model": "b", "heads": ["dense"]})


def test_manifest_only_when_every_shard_exists(tmp_path):
    check_job(tmp_path, {"model": "m"})
    rows = [CorpusRow(str(i), "", "t") for i in range(3)]
    write_shard(tmp_path / shard_name(1), embeddings_table(rows[2:], _emb(1)))
    assert not finalize(tmp_path, 2, 3)
    with pytest.raises(DataError, match="has not finished"):
        read_manifest(tmp_path)
    write_shard(tmp_path / shard_name(0), embeddings_table(rows[:2], _emb(2)))
    assert finalize(tmp_path, 2, 3)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["rows"] == 3 and [s["rows"] for s in m["shards"]] == [2, 1] and m["model"] == "m"
    assert [i for s in iter_shards(tmp_path) for i in s.ids] == ["0", "1", "2"]
    with pytest.raises(DataError, match="not a sharded encode folder"):
        read_manifest(tmp_path / "nothing")


def test_corpus_rows_from_beir_jsonl_text_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "a", "title": "T", "text": "x"}\n\n{"id": 7, "text": "y"}\n', encoding="utf-8"
    )
    rows = list(iter_corpus_rows(tmp_path))  # a BEIR folder
    assert [(r.id, r.passage) for r in rows] == [("a", "T x"), ("7", "y")]
    (tmp_path / "lines.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    assert [(r.id, r.text) for r in iter_corpus_rows(tmp_path / "lines.txt")] == [("1", "one"), ("3", "two")]
    pq.write_table(pa.table({"_id": ["p"], "body": ["z"]}), tmp_path / "c.parquet")
    assert [r.passage for r in iter_corpus_rows(tmp_path / "c.parquet", "body")] == ["z"]
    (tmp_path / "bad.jsonl").write_text('{"_id": "a", "text": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1: needs a non-empty string field 'text'"):
        list(iter_corpus_rows(tmp_path / "bad.jsonl"))


def test_shard_offsets_read_the_same_records_as_the_stream(tmp_path):
    from embforge.data.shards import read_rows_at, shard_offsets

    p = tmp_path / "c.jsonl"
    p.write_text(
        '\ufeff{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": "é"}\n{"_id": "c", "title": "T", "text": "z"}\n\n',
        encoding="utf-8",
    )
    offs = shard_offsets(p, 2)
    assert [c for _, _, c in offs] == [2, 1]
    got = [r for off, line, n in offs for r in read_rows_at(p, off, line, n)]
    assert got == list(iter_corpus_rows(p))
    t = tmp_path / "lines.txt"
    t.write_text("one\n\ntwo\nthree\n", encoding="utf-8")
    assert [r for o, ln, n in shard_offsets(t, 2) for r in read_rows_at(t, o, ln, n)] == list(
        iter_corpus_rows(t)
    )
    (tmp_path / "x.jsonl.gz").write_bytes(b"")
    with pytest.raises(DataError, match="uncompressed"):
        shard_offsets(tmp_path / "x.jsonl.gz", 2)
