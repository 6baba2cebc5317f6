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
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads, backend="auto": FakeEncoder())
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
    run = rep["runs"]["all-MiniLM-L6-v2"]
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


def test_eval_compares_models_and_keeps_same_named_sts_files(tmp_path, monkeypatch):
    """Issue 18: --model A --model B puts both side by side; two sts-dev.csv from two folders both
    reach report.json and report.md (named parent/file), none overwritten."""
    loaded = []
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads, backend="auto": loaded.append(model) or FakeEncoder())
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "sts-dev.csv").write_text(
            "a cat sat,a cat sat,5.0\nthe dog,the sky,0.5\nred car,a red car,4.0\n"
        )
    r = CliRunner().invoke(
        app,
        [
            "eval", "-m", "bundled", "-m", str(tmp_path / "tuned"), "--name", "base", "--name", "tuned",
            "--beir", str(DEMO / "xquad-en"), "--max-queries", "10", "--mrl-dims", "none", "--heads", "dense",
            "--sts", str(tmp_path / "a" / "sts-dev.csv"), "--sts", str(tmp_path / "b" / "sts-dev.csv"),
            "-o", str(tmp_path / "out"),
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output + str(r.exception)
    assert loaded == ["bundled", str(tmp_path / "tuned")]
    rep = json.loads((tmp_path / "out/report.json").read_text())
    assert list(rep["runs"]) == ["base", "tuned"]
    for run in rep["runs"].values():
        assert set(run["sts"]) == {"a/sts-dev", "b/sts-dev"}
    assert "tuned - base" in r.output and "a/sts-dev" in r.output and "b/sts-dev" in r.output
    md = (tmp_path / "out/report.md").read_text()
    assert "| data | measure | base | tuned | tuned - base |" in md and "| b/sts-dev | sts spearman |" in md
    assert (tmp_path / "out/comparison.png").read_bytes()[:4] == b"\x89PNG"

    r = CliRunner().invoke(
        app, ["eval", "-m", "x", "-m", "y", "--name", "one", "--beir", str(DEMO / "xquad-en")]
    )
    assert r.exit_code != 0 and "give one per model" in str(r.exception)


def test_compare_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads, backend="auto": FakeEncoder())
    for d in ("base", "tuned"):
        args = ["eval", "--beir", str(DEMO / "xquad-en"), "--max-queries", "10", "--mrl-dims", "none"]
        r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / d)])
        assert r.exit_code == 0, r.output + str(r.exception)
    r = CliRunner().invoke(
        app,
        ["compare", str(tmp_path / "base"), str(tmp_path / "tuned/report.json"), "-o", str(tmp_path / "cmp")],
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    rep = json.loads((tmp_path / "cmp/report.json").read_text())
    assert list(rep["runs"]) == ["base", "tuned"] and "tuned - base" in r.output
    assert (tmp_path / "cmp/comparison.png").exists()
    r = CliRunner().invoke(app, ["compare", str(tmp_path / "nope.json")])
    assert r.exit_code != 0 and "does not exist" in str(r.exception)


def test_missing_inputs_say_does_not_exist_before_a_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads, backend="auto": pytest.fail("model loaded first"))
    r = CliRunner().invoke(app, ["eval", "--beir", str(tmp_path / "papers_beir"), "--heads", "dense"])
    assert r.exit_code != 0 and "does not exist" in str(r.exception) and "corpus.jsonl" in str(r.exception)
    r = CliRunner().invoke(app, ["mine", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code != 0 and "does not exist" in str(r.exception)
