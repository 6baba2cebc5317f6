"""Huge records (issue 14, "memory stays bounded on huge records"): a line over the per-line
limit is refused while it streams, naming file:line, and is never held whole in memory (checked
with tracemalloc's peak, a count of bytes allocated, not a timing)."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest

from embforge.data.io import BadLines, max_line_bytes, open_text, read_corpus, read_records
from embforge.errors import DataError
from embforge.train.data import read_examples

LIMIT = 64 * 1024


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setenv("EMBFORGE_MAX_LINE_BYTES", str(LIMIT))


def _write(path, huge_chars: int, gz: bool = False):
    lines = [
        json.dumps({"query": "q1", "positive": "p1"}),
        json.dumps({"query": "q2", "positive": "x" * huge_chars}),
        json.dumps({"query": "q3", "positive": "p3"}),
    ]
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        path.write_bytes(gzip.compress(data, compresslevel=1))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["jsonl", "jsonl.gz"])
def test_hostile_huge_line_is_refused_with_file_and_line(tmp_path, small_limit, gz) -> None:
    p = _write(tmp_path / ("r.jsonl.gz" if gz else "r.jsonl"), 10 * LIMIT, gz)
    with pytest.raises(
        DataError, match=rf"r\.jsonl(\.gz)?:2: a line longer than {LIMIT:,} bytes.*EMBFORGE_MAX_LINE_BYTES"
    ):
        list(read_records(p))


def test_hostile_huge_line_is_skipped_with_skip_bad_and_reading_goes_on(tmp_path, small_limit) -> None:
    p = _write(tmp_path / "r.jsonl", 10 * LIMIT)
    with BadLines(tmp_path / "bad.jsonl") as bad:
        got = [r.query for r in read_records(p, bad=bad)]
    assert got == ["q1", "q3"]
    assert bad.count == 1
    rec = json.loads((tmp_path / "bad.jsonl").read_text())
    assert rec["line"] == 2 and len(rec["raw"]) < 300  # a preview, not the whole line


def test_hostile_line_at_the_limit_is_read(tmp_path, small_limit) -> None:
    p = _write(tmp_path / "r.jsonl", LIMIT - 100)
    assert [r.query for r in read_records(p)] == ["q1", "q2", "q3"]


def test_hostile_huge_line_memory_stays_bounded(tmp_path, small_limit) -> None:
    """A 32 MiB line with a 64 KiB limit: the reader's peak Python allocation stays within the
    limit plus a few 1 MiB pieces of the skipped rest (measured ~3 MiB), where reading the line
    whole would allocate over 32 MiB (then as much again for the str and the JSON)."""
    p = _write(tmp_path / "r.jsonl", 32 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r":2: a line longer"):
            list(read_records(p))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak


def test_hostile_huge_line_in_text_readers(tmp_path, small_limit) -> None:
    """Line readers over ``open_text`` (TSV/CSV converters, qrels, .txt training files) and BEIR
    corpora are limited the same way."""
    txt = tmp_path / "train.txt"
    txt.write_text("short one\n" + "y" * (3 * LIMIT) + "\nshort two\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.txt:2: a line longer"):
        read_examples([str(txt)])
    with open_text(txt) as fh:
        assert fh.readline() == "short one\n"
        with pytest.raises(DataError, match=r":2: a line longer"):
            fh.readline()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d1", "text": "z" * (2 * LIMIT)}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"corpus\.jsonl:1: a line longer"):
        list(read_corpus(corpus))


def test_hostile_line_limit_setting(monkeypatch) -> None:
    monkeypatch.delenv("EMBFORGE_MAX_LINE_BYTES", raising=False)
    assert max_line_bytes() == 32 * 2**20
    monkeypatch.setenv("EMBFORGE_MAX_LINE_BYTES", "12k")
    with pytest.raises(DataError, match=r"EMBFORGE_MAX_LINE_BYTES='12k'"):
        max_line_bytes()
