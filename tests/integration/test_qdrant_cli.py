"""encode -> shards -> `embforge index --backend qdrant` (no re-encoding) -> search / eval --index,
against the hybrid index built from the same shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from helpers.requires import require_module

DEMO = Path(__file__).parents[2] / "src/embforge/resources/demo/xquad-en"
pytestmark = pytest.mark.integration


def _ok(args: list[str]) -> None:
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output + str(r.exception)


@pytest.mark.slow
def test_qdrant_index_from_shards_searches_and_evaluates_like_the_hybrid(tmp_path, tiny_m3_path):
    require_module("qdrant_client", "pip install 'embforge[qdrant]'")
    shards = tmp_path / "shards"
    _ok(
        [
            "encode",
            str(DEMO),
            "-o",
            str(shards),
            "--model",
            str(tiny_m3_path),
            "--heads",
            "dense,sparse,multivector",
            "--shard-size",
            "100",
        ]
    )
    _ok(["index", str(shards), "-o", str(tmp_path / "q"), "--backend", "qdrant"])
    _ok(["index", str(shards), "-o", str(tmp_path / "h")])  # the hybrid folder, from the same shards
    _ok(["index", str(shards), "-o", str(tmp_path / "q"), "--backend", "qdrant"])  # idempotent re-ingest
    info = json.loads((tmp_path / "q" / "index.json").read_text())
    assert (
        info["kind"] == "qdrant"
        and info["count"] == 240
        and info["meta"]["encoder"]["heads"] == ["dense", "sparse", "multivector"]
    )
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join((DEMO / "queries.jsonl").read_text().splitlines(True)[:12]), encoding="utf-8")
    for name in ("q", "h"):
        _ok(["search", str(tmp_path / name), str(queries), "-o", str(tmp_path / f"{name}.json"), "-k", "5"])
    rq, rh = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("q", "h"))
    assert rq.keys() == rh.keys()
    for qid in rq:  # the best hit and its fused score agree
        best_q, best_h = (max(r[qid].items(), key=lambda kv: kv[1]) for r in (rq, rh))
        assert best_q[1] == pytest.approx(best_h[1], abs=1e-4)
    for name in ("q", "h"):
        _ok(
            [
                "eval",
                "--index",
                str(tmp_path / name),
                "--beir",
                str(DEMO),
                "--max-queries",
                "15",
                "-o",
                str(tmp_path / f"eval-{name}"),
            ]
        )
    got = [
        json.loads((tmp_path / f"eval-{n}" / "report.json").read_text())["runs"]["index"]["retrieval"][
            "xquad-en"
        ]
        for n in ("q", "h")
    ]
    assert got[0]["heads"]["index"]["ndcg@10"] == pytest.approx(got[1]["heads"]["index"]["ndcg@10"], abs=0.02)


def test_qdrant_index_cli_small(tmp_path, tiny_m3_path):
    """The default-suite version: a 30-document corpus, encoded while indexing, re-ingested, searched."""
    require_module("qdrant_client", "pip install 'embforge[qdrant]'")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join((DEMO / "corpus.jsonl").read_text().splitlines(True)[:30]), encoding="utf-8")
    args = [
        "index",
        str(corpus),
        "-o",
        str(tmp_path / "q"),
        "--backend",
        "qdrant",
        "--model",
        str(tiny_m3_path),
        "--heads",
        "dense,sparse",
        "--quantization",
        "scalar",
    ]
    _ok(args)
    assert json.loads((tmp_path / "q" / "index.json").read_text())["count"] == 30
    queries = tmp_path / "q.txt"
    queries.write_text("who wrote the song\nwhere is the river\n", encoding="utf-8")
    _ok(["search", str(tmp_path / "q"), str(queries), "-o", str(tmp_path / "run.json"), "-k", "3"])
    run = json.loads((tmp_path / "run.json").read_text())
    assert set(run) == {"1", "2"} and all(len(v) == 3 for v in run.values())
    r = CliRunner().invoke(
        app, ["index", str(corpus), "-o", str(tmp_path / "x"), "--backend", "qdrant", "--quantization", "pq"]
    )
    assert "choose from: none, scalar, binary" in str(r.exception)
