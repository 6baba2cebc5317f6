import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embforge.cli import eval as eval_cli  # noqa: E402
from embforge.cli.app import app  # noqa: E402
from helpers.fake_encoder import FakeEncoder

DEMO = Path(__file__).parents[2] / "src/embforge/resources/demo"
pytestmark = pytest.mark.integration


def test_eval_cli_writes_report_with_every_head(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads: FakeEncoder())
    sts = tmp_path / "stsb-en-dev.csv"
    sts.write_text("a cat sat,a cat sat,5.0\nthe dog,the sky,0.5\nred car,a red car,4.0\n")
    src, tgt = tmp_path / "t.deu", tmp_path / "t.eng"
    src.write_text("a cat\nthe dog\n")
    tgt.write_text("a cat\nthe dog\n")
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--beir",
            str(DEMO / "xquad-en"),
            "--beir",
            str(DEMO / "xquad-de"),
            "--max-queries",
            "20",
            "--sts",
            str(sts),
            "--bitext",
            f"{src},{tgt}",
            "--mrl-dims",
            "16,48",
            "--heads",
            "dense,sparse,multivector",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "xquad-en" in r.output and "hybrid" in r.output
    rep = json.loads((tmp_path / "out/report.json").read_text())
    run = rep["runs"]["model"]
    assert set(run["retrieval"]["xquad-en"]["heads"]) == {"dense", "sparse", "multivector", "hybrid", "bm25"}
    assert set(run["retrieval"]["xquad-de"]["mrl"]) == {"16", "48"}
    assert run["sts"]["stsb-en-dev"]["spearman"] == pytest.approx(1.0)
    assert run["bitext"]["t.deu"]["accuracy@1"] == 1.0
    assert "embforge" in rep["versions"] and "--beir" in rep["command"]
    assert (tmp_path / "out/languages.png").exists() and (tmp_path / "out/report.md").exists()


def test_eval_cli_errors_name_the_fix(tmp_path):
    r = CliRunner().invoke(app, ["eval", "--beir", str(DEMO / "xquad-en"), "--heads", "dense,splade"])
    assert r.exit_code != 0 and "choose from: auto, dense, sparse, multivector" in str(r.exception)
    r = CliRunner().invoke(app, ["eval", "--beir", str(DEMO / "xquad-en"), "--split", "dev"])
    assert "choose a split from: test, train" in str(r.exception)
    r = CliRunner().invoke(app, ["eval"])
    assert "nothing to evaluate" in str(r.exception)


def test_eval_cli_on_a_saved_index(tmp_path, tiny_m3_path):
    r = CliRunner().invoke(
        app, ["index", str(DEMO / "xquad-en"), "-o", str(tmp_path / "idx"), "--model", str(tiny_m3_path)]
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "--index",
            str(tmp_path / "idx"),
            "--beir",
            str(DEMO / "xquad-en"),
            "--max-queries",
            "15",
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    rep = json.loads((tmp_path / "out/report.json").read_text())
    got = rep["runs"]["index"]["retrieval"]["xquad-en"]
    assert got["num_queries"] == 15 and got["ids_not_in_corpus"] == 0
    assert 0 <= got["heads"]["index"]["ndcg@10"] <= 1 and "--index" in rep["command"]
