"""`embforge convert ...` end to end on the real files."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.errors import DataError
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA
pytestmark = pytest.mark.integration


def _run(*args: str):
    return CliRunner().invoke(app, list(map(str, args)))


def test_convert_xquad_cli(tmp_path):
    r = _run("convert", "xquad", DATA / "xquad", "-o", tmp_path, "--languages", "en", "--languages", "th", "--cross", "all")
    assert r.exit_code == 0, r.output
    assert f"{tmp_path / 'th-en'}: 240 docs, 1190 queries, 1190 qrels" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en", "en-th", "th", "th-en"]
    header = (tmp_path / "en/qrels/test.tsv").read_text().splitlines()[0]
    assert header == "query-id\tcorpus-id\tscore"


def test_convert_nli_and_sts_cli(tmp_path):
    ko = DATA / "nli/kornli_xnli_ko"
    r = _run("convert", "nli", ko / "xnli.dev.ko.tsv", ko / "xnli.test.ko.tsv", "-o", tmp_path / "ko.jsonl")
    assert r.exit_code == 0, r.output
    assert "2500 triples" in r.output
    r = _run(
        "convert",
        "nli",
        DATA / "nli/snli_esnli",
        "--split",
        "dev",
        "--split",
        "test",
        "-o",
        tmp_path / "en.jsonl",
    )
    assert "5864 triples" in r.output, r.output
    r = _run(
        "convert",
        "sts",
        DATA / "sts/korsts/sts-train.tsv",
        "-o",
        tmp_path / "k.jsonl.gz",
        "--min-score",
        "4",
        "--lang",
        "ko",
    )
    assert r.exit_code == 0, r.output
    n = int(r.output.split(": ")[1].split()[0])
    assert 0 < n < 5749


def test_convert_skip_bad_cli(tmp_path):
    bad_in = tmp_path / "in.tsv"
    bad_in.write_text(
        "sentence1\tsentence2\tgold_label\na\tb\tentailment\na\tc\tcontradiction\na\td\tmaybe\n"
    )
    out = tmp_path / "t.jsonl"
    r = _run("convert", "nli", bad_in, "-o", out)
    assert isinstance(r.exception, DataError) and "in.tsv:4: unknown NLI label 'maybe'" in str(r.exception)
    assert not out.exists()  # nothing half-written
    r = _run("convert", "nli", bad_in, "-o", out, "--skip-bad")
    assert r.exit_code == 0, r.output
    assert "skipped 1 bad line(s)" in r.output
    side = [json.loads(x) for x in (tmp_path / "t.jsonl.bad.jsonl").read_text().splitlines()]
    assert side[0]["line"] == 4 and side[0]["raw"] == "a\td\tmaybe"
    assert len(out.read_text().splitlines()) == 1


def test_validate_cli(tmp_path):
    r = _run("validate", DATA / "dbpedia_subset")
    assert r.exit_code == 0, r.output
    assert "5000 documents, 50 queries, 3709 qrels" in r.output
    assert "40 queries with a relevant document" in r.output
    p = tmp_path / "mixed.jsonl"
    p.write_text(
        '{"query": "a", "positive": "b", "source": "s1", "lang": "en"}\n'
        '{"query": "a", "positive": "b", "negative": "c", "source": "s2"}\n'
        '{"query": "a"}\n'
        "[1]\n"
    )
    r = _run("validate", p)
    assert isinstance(r.exception, DataError) and "mixed.jsonl:3: cannot tell the record kind" in str(
        r.exception
    )
    r = _run("validate", p, "--all-errors")
    assert r.exit_code == 1
    assert "2 valid records" in r.output and "'pair': 1, 'triple': 1" in r.output
    assert "skipped 2 bad line(s)" in r.output
    assert len((tmp_path / "mixed.jsonl.bad.jsonl").read_text().splitlines()) == 2
