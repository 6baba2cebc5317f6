"""`embforge mine / filter / dedup` end to end with a real (tiny) embforge model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.data import read_records, write_jsonl
from embforge.data.convert.squad import read_squad, squad_pairs
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_m3() -> str:
    from helpers.tiny_m3 import tiny_m3_checkpoint

    return str(tiny_m3_checkpoint())


@pytest.fixture(scope="module")
def xquad_pairs(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("xq") / "pairs.jsonl"
    paras = read_squad(DATA / "xquad/xquad.en.json")[:12]
    write_jsonl(p, squad_pairs(paras, "en", "xquad-en"))
    return p


def _run(*args):
    return CliRunner().invoke(app, list(map(str, args)))


def test_mine_cli_hybrid_teacher(tiny_m3, xquad_pairs, tmp_path):
    out = tmp_path / "mined.jsonl"
    r = _run(
        "mine", xquad_pairs, "-o", out, "--model", tiny_m3, "--heads", "dense,sparse,multivector",
        "--top-k", "8", "--negatives", "3", "--max-length", "128", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "dropped as likely false negatives (TopK-PercPos" in r.output
    n_in = sum(1 for _ in read_records(xquad_pairs))
    mined = list(read_records(out, kind="example"))
    assert len(mined) == n_in
    for ex in mined:
        assert ex.pos[0] not in ex.neg and len(ex.neg) == len(ex.neg_scores) <= 3
        if ex.neg and ex.pos_scores[0] > 0:
            assert max(ex.neg_scores) <= 0.95 * ex.pos_scores[0] + 1e-5


def test_mine_cli_skip_bad(tiny_m3, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"query": "what is a cat", "positive": "a cat is an animal"}\n{broken\n'
        '{"query": "who wrote it", "positive": "the author wrote it"}\n'
        '{"query": "x", "positive": "unrelated text here"}\n'
    )
    r = _run("mine", src, "-o", tmp_path / "o.jsonl", "--model", tiny_m3, "--top-k", "2", "--negatives", "1")
    assert "in.jsonl:2: invalid JSON" in str(r.exception)
    r = _run(
        "mine",
        src,
        "-o",
        tmp_path / "o.jsonl",
        "-m",
        tiny_m3,
        "--top-k",
        "2",
        "-n",
        "1",
        "--skip-bad",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    assert "skipped 1 bad line(s)" in r.output
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "o.jsonl.bad.jsonl").read_text())["line"] == 2


def test_filter_and_dedup_cli(xquad_pairs, tmp_path):
    """Filtering with the default model (all-MiniLM-L6-v2): a tiny random model's dense
    vectors are all alike, so only a real model tells pairs apart."""
    rows = [json.loads(x) for x in xquad_pairs.read_text().splitlines()][:40]
    rows.append({"query": rows[0]["query"], "positive": rows[0]["positive"], "source": "copy"})
    write_jsonl(tmp_path / "in.jsonl", rows)
    r = _run("dedup", tmp_path / "in.jsonl", "-o", tmp_path / "d.jsonl")
    n_unique = len({(x["query"], x["positive"]) for x in rows})  # xquad itself repeats a few questions
    assert r.exit_code == 0, r.output
    assert f"{len(rows) - n_unique} exact duplicates removed, {n_unique} kept" in r.output
    r = _run(
        "filter", tmp_path / "d.jsonl", "-o", tmp_path / "f.jsonl", "--top-k", "1",
        "--shard-size", "30", "--max-length", "96", "--dropped", tmp_path / "drop.jsonl", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "| xquad-en |" in r.output
    kept = len((tmp_path / "f.jsonl").read_text().splitlines())
    dropped = len((tmp_path / "drop.jsonl").read_text().splitlines())
    assert kept + dropped == n_unique and dropped > 0
