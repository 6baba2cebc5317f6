"""A data set's language comes from the data, not from its folder name (issue 18): a folder
named ``papers_beir_ne`` holding English is English, not Nepali."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embforge.cli import eval as eval_cli
from embforge.cli.app import app
from embforge.data.convert.squad import read_squad, squad_to_beir
from embforge.data.io import read_queries, write_beir
from embforge.eval.datasets import data_language, load_beir, load_sts
from embforge.resources import demo_path
from helpers.fake_encoder import FakeEncoder


def _beir(root: Path, qlang: str | None, dlang: str | None, meta: bool = False) -> Path:
    (root / "qrels").mkdir(parents=True)

    def tag(lang: str | None) -> dict:
        if lang is None:
            return {}
        return {"metadata": {"language": lang}} if meta else {"lang": lang}

    docs = [{"_id": f"d{i}", "text": f"paper {i} about graphs", **tag(dlang)} for i in range(3)]
    queries = [{"_id": f"q{i}", "text": f"which paper {i}", **tag(qlang)} for i in range(3)]
    for name, rows in (("corpus.jsonl", docs), ("queries.jsonl", queries)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    return root


def test_folder_name_suffix_is_not_the_language(tmp_path, caplog):
    data = load_beir(_beir(tmp_path / "papers_beir_ne", "en", "en"))
    assert (data.language, data.meta["language_source"]) == ("en", "data")
    assert "guessed" not in caplog.text


def test_language_in_metadata_and_cross_lingual_and_mixed(tmp_path):
    assert load_beir(_beir(tmp_path / "a", "de", "de", meta=True)).language == "de"
    assert load_beir(_beir(tmp_path / "b", "de", "en")).language == "de-en"
    assert data_language(["de", "en", "de"]) == "de+en"
    assert data_language([], ["fr"]) == "fr" and data_language([""], [""]) == ""


def test_given_language_wins_and_the_name_is_only_a_warned_last_resort(tmp_path, caplog):
    root = _beir(tmp_path / "papers_beir_ne", None, None)
    caplog.set_level(logging.WARNING)
    guessed = load_beir(root)
    assert (guessed.language, guessed.meta["language_source"]) == ("ne", "name")
    assert "no 'lang' field in the data, so the language 'ne' is guessed from the name" in caplog.text
    given = load_beir(root, language="en")
    assert (given.language, given.meta["language_source"]) == ("en", "given")
    assert load_beir(_beir(tmp_path / "corpus", None, None)).language == ""  # no tag anywhere


def test_sts_jsonl_language_from_its_records(tmp_path):
    f = tmp_path / "sts-xx-dev.jsonl"
    f.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "score": 4.0, "lang": "ko"}) + "\n")
    assert load_sts(f).language == "ko"
    assert load_sts(f, language="en").language == "en"


def test_bundled_demo_sets_carry_their_language(caplog):
    caplog.set_level(logging.WARNING)
    for lang in ("de", "en", "es"):
        data = load_beir(demo_path(f"xquad-{lang}"), name="renamed", max_queries=5)
        assert (data.language, data.meta["language_source"]) == (lang, "data")
    assert "guessed" not in caplog.text


def test_squad_conversion_writes_the_language_into_the_rows(tmp_path):
    src = tmp_path / "qa.json"
    para = {"context": "Paris is in France.", "qas": [{"id": "x1", "question": "Where is Paris?"}]}
    src.write_text(json.dumps({"data": [{"title": "Paris", "paragraphs": [para]}]}), encoding="utf-8")
    write_beir(tmp_path / "set", *squad_to_beir(read_squad(src), lang="fr"))
    assert [q.lang for q in read_queries(tmp_path / "set" / "queries.jsonl")] == ["fr"]
    assert load_beir(tmp_path / "set").language == "fr"


def test_eval_reports_the_data_language_and_takes_lang(tmp_path, monkeypatch):
    monkeypatch.setattr(eval_cli, "_load_encoder", lambda model, heads: FakeEncoder())
    root = _beir(tmp_path / "papers_beir_ne", "en", "en")
    for extra, want in (([], ("en", "data")), (["--lang", "de"], ("de", "given"))):
        out = tmp_path / f"out{len(extra)}"
        args = ["eval", "--beir", str(root), "--heads", "dense", "--no-bm25", "--mrl-dims", "none"]
        r = CliRunner().invoke(app, [*args, "--no-plots", *extra, "-o", str(out)])
        assert r.exit_code == 0, r.output
        res = json.loads((out / "report.json").read_text())["runs"]["all-MiniLM-L6-v2"]["retrieval"]
        assert (res["papers_beir_ne"]["language"], res["papers_beir_ne"]["language_source"]) == want


@pytest.mark.parametrize("bad", [{"lang": 3}, {"metadata": {"lang": ["en"]}}])
def test_a_lang_that_is_not_a_string_names_the_line(tmp_path, bad):
    from embforge.errors import DataError

    q = tmp_path / "queries.jsonl"
    q.write_text(json.dumps({"_id": "1", "text": "x", **bad}) + "\n")
    with pytest.raises(DataError, match=r"queries.jsonl:1: field 'lang' must be a language tag string"):
        list(read_queries(q))
