"""Every corrupt input is one line naming file:line (or file) and the fix, exit code 2, before
any model is loaded, in every command; outputs are checked before work and a failed command
leaves no folder behind (issue 14, "Files and commands")."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from embforge.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
PAIR = b'{"query": "what is a cat", "positive": "a small animal"}\n'


def _run(monkeypatch, capsys, *args: object) -> tuple[int, str]:
    """Run the console entry point in-process; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["embforge", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    return int(e.value.code or 0), capsys.readouterr().err


def _expect_user_error(monkeypatch, capsys, match: str, *args: object) -> str:
    code, err = _run(monkeypatch, capsys, *args)
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1, err  # one error (a config lists all its problems under it)
    assert match in err, err
    return lines[0]


CORRUPT_RECORDS = {
    "trunc.jsonl.gz": gzip.compress(PAIR * 50)[:-20],
    "fake.jsonl.gz": b"hello, not gzip\n",
    "garbage.parquet": b"PAR1 garbage garbage PAR1",
    "deep.jsonl": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "bigint.jsonl": b'{"query": "a", "positive": "b", "score": ' + b"9" * 5000 + b"}\n",
    "badutf8.jsonl": b'{"query": "\xff", "positive": "b"}\n',
    "surrogate.jsonl": b'{"query": "\\ud800", "positive": "b"}\n',
}


@pytest.mark.parametrize("name", sorted(CORRUPT_RECORDS))
@pytest.mark.parametrize("command", ["validate", "mine", "dedup", "filter"])
def test_malformed_record_files_exit_2_in_every_command(tmp_path, monkeypatch, capsys, name, command) -> None:
    path = tmp_path / name
    path.write_bytes(CORRUPT_RECORDS[name])
    out = tmp_path / "out.jsonl"
    args = [command, path] if command == "validate" else [command, path, "-o", out]
    if command in ("mine", "filter"):  # the input must fail before the model is loaded
        args += ["--model", tmp_path / "no-such-model"]
    line = _expect_user_error(monkeypatch, capsys, str(path), *args)
    assert "no-such-model" not in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("sts", {"sts.csv": b"a,b,1\n\xff,c,2\n"}),
        ("nli", {"nli.tsv": b"sentence1\tsentence2\tgold_label\n\xffx\ty\tentailment\n"}),
        ("squad", {"squad.json": b"\xff\xfe{}"}),
        ("squad", {"squad.json": b"[" * 100_000}),
        ("tatoeba", {"tatoeba.deu-eng.deu": b"hallo\n\xff\n", "tatoeba.deu-eng.eng": b"hi\nyo\n"}),
        ("sts", {"sts.csv.gz": b"not gzip"}),
    ],
)
def test_malformed_converter_inputs_exit_2(tmp_path, monkeypatch, capsys, command, files) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, raw in files.items():
        (src / name).write_bytes(raw)
    first = src / next(iter(files))
    out = tmp_path / "out"
    args = {
        "sts": ["convert", "sts", first, "-o", out / "x.jsonl"],
        "nli": ["convert", "nli", first, "-o", out / "x.jsonl"],
        "squad": ["convert", "squad", first, "-o", out],
        "tatoeba": ["convert", "tatoeba", src, "-o", out],
    }[command]
    _expect_user_error(monkeypatch, capsys, str(src), *args)
    assert not out.exists(), "a failed command must not leave its output folder behind"


def _beir(root: Path, corpus: list[dict], queries: list[dict], qrels: str) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


DOCS = [{"_id": "d1", "text": "cats"}, {"_id": "d2", "text": "dogs"}]
QUERIES = [{"_id": "q1", "text": "cat?"}]


@pytest.mark.parametrize(
    ("corpus", "queries", "qrels", "match"),
    [
        ([], QUERIES, "q1\td1\t1\n", "corpus is empty"),
        (DOCS, QUERIES, "", "no judgements"),
        (DOCS, QUERIES, "q1\td9\t1\n", "'d9' is not in the corpus"),
        (DOCS, QUERIES, "q7\td1\t1\n", "'q7' is not in the queries"),
        ([*DOCS, {"_id": "d1", "text": "again"}], QUERIES, "q1\td1\t1\n", "'d1' already used on line 1"),
        (DOCS, [*QUERIES, {"_id": "q1", "text": "again"}], "q1\td1\t1\n", "'q1' already used on line 1"),
    ],
    ids=["empty-corpus", "empty-qrels", "unknown-doc", "unknown-query", "dup-doc", "dup-query"],
)
def test_malformed_beir_sets_fail_eval_before_the_model(tmp_path, monkeypatch, capsys, corpus, queries, qrels, match):
    root = _beir(tmp_path / "set", corpus, queries, qrels)
    out = tmp_path / "report"
    _expect_user_error(monkeypatch, capsys, match, "eval", "--beir", root, "-m", tmp_path / "nope", "-o", out)
    assert not out.exists()


def test_empty_documents_are_kept_and_counted(tmp_path, caplog) -> None:
    from embforge.eval.datasets import load_beir

    docs = [*DOCS, {"_id": "d3", "title": "", "text": ""}, {"_id": "d4", "text": ""}]
    root = _beir(tmp_path / "set", docs, QUERIES, "q1\td1\t1\n")
    with caplog.at_level("WARNING", logger="embforge"):
        data = load_beir(root)
    assert data.doc_ids == ["d1", "d2", "d3", "d4"]
    assert any("2 document(s) with empty title and text kept" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("raw", "override", "match"),
    [
        (b"\x00\x01\xff binary", None, "not a UTF-8 text file"),
        (b"recipe: simcse-unsup\nrecipe: simcse-unsup\n", None, "written twice"),
        (None, "optim.lr=nan", "finite number"),
        (None, "optim.lr=.inf", "finite number"),
        (b"recipe: " + b"[" * 5000, None, "nested too deeply"),
    ],
    ids=["binary", "duplicate-key", "nan-lr", "inf-lr", "deep"],
)
def test_malformed_train_configs_fail_check(tmp_path, monkeypatch, capsys, raw, override, match) -> None:
    cfg = tmp_path / "cfg.yaml"
    if raw is None:
        cfg.write_bytes((ROOT / "configs" / "simcse-unsup.yaml").read_bytes())
    else:
        cfg.write_bytes(raw)
    args = ["train", cfg, *([override] if override else []), "--check"]
    _expect_user_error(monkeypatch, capsys, match, *args)


def test_malformed_outputs_are_refused_before_work(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(PAIR)
    nope = tmp_path / "no-such-model"
    _expect_user_error(monkeypatch, capsys, "also an input", "mine", data, "-o", data, "--model", nope)
    assert data.read_bytes() == PAIR
    _expect_user_error(monkeypatch, capsys, "also an input", "dedup", data, "-o", data)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    _expect_user_error(monkeypatch, capsys, "is a file", "index", data, "-o", a_file, "--model", nope)
    _expect_user_error(monkeypatch, capsys, "is a file", "eval", "--beir", tmp_path, "-o", a_file)
    _expect_user_error(monkeypatch, capsys, "is a folder", "convert", "sts", data, "-o", tmp_path)
    _expect_user_error(monkeypatch, capsys, "is a file", "encode", data, "-o", a_file / "x.npy", "-m", nope)


def test_malformed_search_weights_exit_2(tmp_path, monkeypatch, capsys) -> None:
    q = tmp_path / "q.txt"
    q.write_text("hello\n")
    _expect_user_error(
        monkeypatch, capsys, "--weights", "search", tmp_path, q, "-o", tmp_path / "r.trec", "--weights", "nan,1,1"
    )
