"""The quickstart pipeline end to end on the tiny model (the same code `make demo` runs)."""

import json

import pytest

from embforge.quickstart import QuickstartConfig, run_quickstart

pytestmark = pytest.mark.integration


def test_quickstart_runs_every_stage_on_a_tiny_model(tiny_m3_path, tmp_path):
    lines: list[str] = []
    cfg = QuickstartConfig(
        model=str(tiny_m3_path),
        languages=("en", "de"),
        out_dir=str(tmp_path / "demo"),
        max_eval_queries=12,
        max_train_queries=24,
        steps=3,
        batch_size=4,
        n_negatives=1,
        doc_max_length=64,
        query_max_length=24,
        examples=2,
        matryoshka_dims=(16,),
        perc_pos=None,  # a random model scores everything alike: PercPos would drop every candidate
        dev_queries=10,
    )
    res = run_quickstart(cfg, echo=lines.append)
    text = "\n".join(lines)
    for stage in ("1/6", "2/6", "3/6", "4/6", "5/6", "6/6"):
        assert stage in text
    assert "dropped as likely false negatives (TopK-PercPos" in text
    heads = set(res["after"]["retrieval"]["xquad-en"]["heads"])
    assert heads == {"dense", "sparse", "multivector", "hybrid", "bm25"}
    assert len(res["search"]["examples"]) == 2
    rep = json.loads((tmp_path / "demo/report/report.json").read_text())
    assert set(rep["runs"]) == {"base", "fine-tuned"} and rep["mining"]["queries"] == 48
    md = (tmp_path / "demo/report/report.md").read_text()
    assert "base vs fine-tuned" in md and "languages.png" in md
    assert (tmp_path / "demo/train/final").is_dir() and (tmp_path / "demo/index").is_dir()
    # the fusion is measured on 10 held-out training questions per language, never mined
    fusion = json.loads((tmp_path / "demo/train/final/fusion.json").read_text())
    assert fusion["tuned"]["num_queries"] == 20 and rep["fusion"]["fusion"] == fusion["fusion"]
    assert res["after"]["retrieval"]["xquad-en"]["hybrid_fusion"] == fusion["fusion"]
    from embforge.eval.datasets import load_beir
    from embforge.resources import demo_path

    dev = {
        q
        for lang in ("en", "de")
        for q in load_beir(demo_path(f"xquad-{lang}"), split="train").query_ids[-10:]
    }
    mined = [json.loads(x) for x in (tmp_path / "demo/train_mined.jsonl").read_text().splitlines()]
    assert all(r["id"] for r in mined) and not dev & {r["id"] for r in mined}
    log = [json.loads(x) for x in (tmp_path / "demo/train/log.jsonl").read_text().splitlines()]
    assert any("infonce/dense@16" in r for r in log) and any("kd/sparse" in str(r) for r in log)
    # the fine-tuned model really changed: its dense scores differ from the base model's
    b = res["before"]["retrieval"]["xquad-en"]["heads"]["dense"]
    a = res["after"]["retrieval"]["xquad-en"]["heads"]["dense"]
    assert b != a


def test_demo_cli_rejects_unknown_language():
    from typer.testing import CliRunner

    from embforge.cli.app import app

    r = CliRunner().invoke(app, ["demo", "--languages", "en,ko"])
    assert r.exit_code != 0 and "choose from: de, en, es" in str(r.exception)
