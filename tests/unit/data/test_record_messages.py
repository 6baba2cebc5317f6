"""Data-record errors a user can act on (issue 18): a misspelt field gets "did you mean" with
file:line, and a TSV file where JSONL is read (or JSONL where TSV is read) says so and how to
convert it. Every reader goes through these checks: training records, BEIR rows, qrels, STS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.data.io import read_corpus, read_qrels, read_queries, read_records
from embforge.errors import DataError
from embforge.eval.datasets import load_sts


def _jsonl(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "row, typo, field",
    [
        ({"query": "q", "postive": "p"}, "postive", "positive"),
        ({"query": "q", "positve": "p"}, "positve", "positive"),
        ({"query": "q", "positive": "p", "negtive": "n"}, "negtive", "negative"),
        ({"sentence1": "a", "sentence2": "b", "scroe": 4.0}, "scroe", "score"),
        ({"query": "q", "pos": ["p"], "negs": ["n"]}, "negs", "neg"),
        ({"query": "q", "pos": ["p"], "pos_score": [1.0]}, "pos_score", "pos_scores"),
        ({"query": "q", "positive": "p", "sorce": "nli"}, "sorce", "source"),
    ],
)
def test_misspelt_field_is_one_line_did_you_mean_with_file_and_line(tmp_path, row, typo, field):
    f = _jsonl(tmp_path / "train.jsonl", {"query": "fine", "positive": "fine"}, row)
    with pytest.raises(DataError) as e:
        list(read_records(f))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}:2: unknown field {typo!r}; did you mean {field!r}?")
    assert f"rename {typo!r} to {field!r}" in msg


def test_extra_fields_that_are_no_typo_are_kept_out_silently(tmp_path):
    """A data set's own columns (FlagEmbedding's prompt/type, a BEIR-style _id, metadata) still load."""
    f = _jsonl(
        tmp_path / "train.jsonl",
        {"query": "q", "pos": ["p"], "prompt": "Represent:", "type": "normal"},
        {"query": "q", "positive": "p", "_id": "7", "url": "https://x", "label": 1},
    )
    assert [r.kind for r in read_records(f)] == ["example", "pair"]


def test_beir_rows_get_did_you_mean_too(tmp_path):
    q = _jsonl(tmp_path / "queries.jsonl", {"_id": "1", "txt": "hello"})
    with pytest.raises(DataError, match=r"queries.jsonl:1: unknown field 'txt'; did you mean 'text'\?"):
        list(read_queries(q))
    c = _jsonl(tmp_path / "corpus.jsonl", {"_id": "d", "text": "x", "tilte": "T"})
    with pytest.raises(DataError, match=r"corpus.jsonl:1: unknown field 'tilte'; did you mean 'title'\?"):
        list(read_corpus(c))


def test_validate_command_reports_the_typo(tmp_path):
    """`embforge validate` (the check users run first) exits 2 with the same one line."""
    f = _jsonl(tmp_path / "pairs.jsonl", {"query": "q", "positve": "p"})
    r = CliRunner().invoke(app, ["validate", str(f)])
    assert r.exit_code != 0
    assert "pairs.jsonl:1: unknown field 'positve'; did you mean 'positive'?" in (r.output + str(r.exception))


def test_tsv_where_jsonl_is_expected_says_so_and_how_to_convert(tmp_path):
    for name in ("pairs.jsonl", "pairs.tsv"):
        f = tmp_path / name
        f.write_text("what is it\tit is a test\n", encoding="utf-8")
        with pytest.raises(DataError) as e:
            list(read_records(f))
        msg = str(e.value)
        assert msg.startswith(f"{f}:1: TAB-separated text, not JSON: this looks like a TSV file")
        assert "JSONL (one JSON object per line) is expected" in msg and "embforge convert sts" in msg
    q = tmp_path / "queries.jsonl"
    q.write_text("1\twhat is it\n", encoding="utf-8")
    with pytest.raises(DataError, match="looks like a TSV file"):
        list(read_queries(q))


def test_jsonl_where_tsv_is_expected_says_so_and_how_to_convert(tmp_path):
    qrels = _jsonl(tmp_path / "test.tsv", {"query-id": "1", "corpus-id": "d", "score": 1})
    with pytest.raises(DataError) as e:
        list(read_qrels(qrels))
    msg = str(e.value)
    assert msg.startswith(f"{qrels}:1: a JSON object, not TAB-separated qrels")
    assert "looks like a JSONL file" in msg and "python -c" in msg
    sts = _jsonl(tmp_path / "sts-dev.tsv", {"sentence1": "a", "sentence2": "b", "score": 3.0})
    with pytest.raises(
        DataError, match=r"sts-dev.tsv:1: a JSON object, not CSV: this looks like a JSONL file"
    ):
        load_sts(sts)
    renamed = sts.rename(tmp_path / "sts-dev.jsonl")  # the fix the message names
    assert load_sts(renamed).scores == [3.0]
