"""Record formats, validation messages and streaming readers."""

from __future__ import annotations

import gzip
import inspect
import json
import tracemalloc
from pathlib import Path

import pytest

from embforge.data import (
    BadLines,
    Example,
    Pair,
    ScoredPair,
    Triple,
    atomic_write,
    count_rows,
    load_qrels,
    parse_record,
    read_corpus,
    read_qrels,
    read_queries,
    read_records,
    write_beir,
    write_jsonl,
)
from embforge.data.formats import CorpusDoc, Qrel, Query
from embforge.errors import DataError
from helpers.paths import SHARED_DATA

DBPEDIA = SHARED_DATA / "dbpedia_subset"


def test_each_kind_parses_and_round_trips():
    recs = [
        Pair("q", "p", source="s", lang="en"),
        ScoredPair("a", "b", 3.8, lang="en"),
        Triple("a", "e", "c", source="nli"),
        Example("q", ["p"], ["n1", "n2"], [0.9], [0.5, 0.4], id="7"),
    ]
    for r in recs:
        assert parse_record(json.loads(json.dumps(r.to_dict()))) == r
    assert recs[2].to_example() == Example("a", ["e"], ["c"], source="nli")


def test_flagembedding_layout_loads_unchanged():
    rec = parse_record({"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [1], "neg_scores": [0.5]})
    assert isinstance(rec, Example) and rec.neg_scores == [0.5]


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"query": "q"}, r"cannot tell the record kind"),
        ({"query": "", "positive": "p"}, r"f\.jsonl:3: field 'query' is empty"),
        ({"query": 1, "positive": "p"}, r"field 'query' must be a string, got int"),
        ({"query": "q", "pos": []}, r"empty list; an example needs at least one positive"),
        ({"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": [1, 2]}, r"2 scores but 'neg' has 1"),
        ({"sentence1": "a", "sentence2": "b", "score": "x"}, r"field 'score' must be a number"),
        ({"sentence1": "a", "sentence2": "b"}, r"has no 'score' field"),
        ([1, 2], r"must be a JSON object"),
    ],
)
def test_validation_names_file_line_and_rule(obj, match):
    with pytest.raises(DataError, match=match):
        parse_record(obj, where="f.jsonl:3")


def test_expected_kind_mismatch():
    with pytest.raises(DataError, match="expected a triple record but keys"):
        parse_record({"query": "q", "positive": "p"}, "x:1", kind="triple")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_json_line_raises_with_file_and_line(tmp_path):
    p = _write(tmp_path / "in.jsonl", ['{"query": "q", "positive": "p"}', "", '{"query": "q", '])
    it = read_records(p)
    assert next(it).query == "q"
    with pytest.raises(DataError, match=r"in\.jsonl:3: invalid JSON"):
        next(it)


def test_skip_bad_writes_side_file_and_counts(tmp_path):
    p = _write(
        tmp_path / "in.jsonl",
        [
            '{"query": "q1", "positive": "p1"}',
            "{not json",
            '{"query": "q2", "positive": ""}',
            '{"query": "q3", "positive": "p3"}',
        ],
    )
    with BadLines(tmp_path / "bad.jsonl") as bad:
        got = [r.query for r in read_records(p, bad=bad)]
    assert got == ["q1", "q3"]
    assert bad.count == 2
    side = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert [s["line"] for s in side] == [2, 3]
    assert side[0]["raw"] == "{not json" and "invalid JSON" in side[0]["error"]
    assert "field 'positive' is empty" in side[1]["error"]
    assert "skipped 2 bad line(s)" in bad.summary()


def test_gzip_and_parquet_read_like_jsonl(tmp_path):
    rows = [{"query": f"q{i}", "positive": f"p{i}", "lang": "en"} for i in range(2500)]
    write_jsonl(tmp_path / "a.jsonl.gz", rows)
    with gzip.open(tmp_path / "a.jsonl.gz", "rt") as fh:  # really gzip
        assert json.loads(fh.readline())["query"] == "q0"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet", row_group_size=700)
    gz = list(read_records(tmp_path / "a.jsonl.gz"))
    par = list(read_records(tmp_path / "a.parquet", parquet_batch_size=300))
    assert gz == par and len(gz) == 2500 and gz[-1] == Pair("q2499", "p2499", lang="en")
    assert count_rows(tmp_path / "a.parquet") == count_rows(tmp_path / "a.jsonl.gz") == 2500


def test_parquet_bad_row_names_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"query": "q", "positive": "p"}, {"query": "q", "positive": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b\.parquet:2: field 'positive' is empty"):
        list(read_records(tmp_path / "b.parquet"))


def test_reader_is_lazy_and_memory_is_bounded(tmp_path):
    """A 30 MB file streams with a peak far below its size (so files larger than RAM work)."""
    p = tmp_path / "big.jsonl"
    text = "x" * 1000
    with open(p, "w") as fh:
        for i in range(30_000):
            fh.write(json.dumps({"query": f"q{i} {text}", "positive": f"p{i}"}) + "\n")
    size = p.stat().st_size
    it = read_records(p, kind="pair")
    assert inspect.isgenerator(it)
    tracemalloc.start()
    n = 0
    for _ in it:
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 30_000
    assert peak < 2_000_000 < size / 10, (peak, size)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["out.jsonl"]


def test_beir_real_dbpedia_counts():
    docs = list(read_corpus(DBPEDIA / "corpus.jsonl"))
    queries = list(read_queries(DBPEDIA / "queries.jsonl"))
    qrels = load_qrels(DBPEDIA / "qrels/test.tsv", {q.id for q in queries}, {d.id for d in docs})
    assert (len(docs), len(queries), sum(map(len, qrels.values()))) == (5000, 50, 3709)
    assert sum(1 for v in qrels.values() if any(g > 0 for g in v.values())) == 40


def test_qrels_with_and_without_header_and_missing_ids(tmp_path):
    write_beir(
        tmp_path / "b",
        [CorpusDoc("d1", "text one"), CorpusDoc("d2", "text two", "T")],
        [Query("q1", "what")],
        [Qrel("q1", "d1", 1)],
    )
    assert list(read_qrels(tmp_path / "b/qrels/test.tsv")) == [Qrel("q1", "d1", 1)]
    no_header = _write(tmp_path / "nh.tsv", ["q1\td1\t2", "q1\td9\t1"])
    assert load_qrels(no_header) == {"q1": {"d1": 2, "d9": 1}}
    with pytest.raises(DataError, match=r"nh\.tsv:2: corpus-id 'd9' is not in the corpus"):
        load_qrels(no_header, doc_ids={"d1", "d2"})
    empty_id = _write(tmp_path / "e.tsv", ["query-id\tcorpus-id\tscore", "\td1\t1"])
    with pytest.raises(DataError, match=r"e\.tsv:2: qrels line has an empty query-id"):
        list(read_qrels(empty_id))
    short = _write(tmp_path / "s.tsv", ["q1\td1"])
    with pytest.raises(DataError, match=r"s\.tsv:1: qrels line needs 3 TAB-separated fields"):
        list(read_qrels(short))
    no_id = _write(tmp_path / "c.jsonl", ['{"_id": "a", "text": "t"}', '{"text": "t"}'])
    with pytest.raises(DataError, match=r"c\.jsonl:2: corpus document has no '_id'"):
        list(read_corpus(no_id))


def test_non_utf8_line_and_bom(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"query": "q", "positive": "p"}\n{"query": "caf\xe9", "positive": "p"}\n')
    it = read_records(p)
    assert next(it).query == "q"  # the BOM is skipped
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not UTF-8 text"):
        next(it)
    with BadLines(tmp_path / "bad.jsonl") as bad:
        assert len(list(read_records(p, bad=bad))) == 1
    assert bad.count == 1


def test_parquet_with_several_kinds_treats_null_as_absent(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"query": "q", "positive": "p", "negative": None, "pos": None, "lang": None},
        {"query": "q", "positive": "p", "negative": "n", "pos": None, "lang": "en"},
        {"query": "q", "positive": None, "negative": None, "pos": ["p"], "lang": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mixed.parquet")
    got = list(read_records(tmp_path / "mixed.parquet"))
    assert got == [Pair("q", "p"), Triple("q", "p", "n", lang="en"), Example("q", ["p"])]
