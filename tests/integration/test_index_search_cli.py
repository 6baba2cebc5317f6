from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.index import load_index
from embforge.scoring import hybrid_scores, multivector_list_scores, sparse_vector_scores
from embforge.search import HybridIndex

pytestmark = pytest.mark.integration

DOCS = [
    {"_id": "d1", "title": "Dogs", "text": "the dog runs in the park"},
    {"_id": "d2", "title": "", "text": "재판부는 검찰의 주장을 받아들였다"},
    {"_id": "d3", "title": "Cats", "text": "a cat sleeps on the sofa all day"},
    {"_id": "d4", "title": "", "text": "the river flows to the sea"},
    {"_id": "d5", "title": "Parks", "text": "children play football in the park"},
]
QUERIES = [{"_id": "q1", "text": "dog in a park"}, {"_id": "q2", "text": "검찰의 주장"}]


@pytest.fixture
def beir(tmp_path):
    root = tmp_path / "beir"
    root.mkdir()
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QUERIES) + "\n")
    return root


def _index(beir, out, model, *extra):
    """``embforge index`` of the test corpus with all three heads (and ``extra`` options)."""
    heads = "dense,sparse,multivector"
    return CliRunner().invoke(
        app, ["index", str(beir), "-o", str(out), "--model", str(model), "--heads", heads, *extra]
    )


def test_index_then_search_matches_scoring_functions(tiny_m3_path, tiny_m3, beir, tmp_path):
    out = tmp_path / "idx"
    r = _index(beir, out, tiny_m3_path)
    assert r.exit_code == 0, r.output
    idx = load_index(out)
    assert (
        isinstance(idx, HybridIndex) and len(idx) == 5 and idx.meta["encoder"]["model"] == str(tiny_m3_path)
    )

    run = tmp_path / "run.json"
    r = CliRunner().invoke(app, ["search", str(out), str(beir), "-o", str(run), "-k", "5"])
    assert r.exit_code == 0, r.output
    got = json.loads(run.read_text())

    # reference: encode with the Python API and score with embforge.scoring (all 5 docs are candidates)
    heads = ("dense", "sparse", "multivector")
    texts = [f"{d['title']} {d['text']}".strip() for d in DOCS]
    de = tiny_m3.encode(texts, role="document", heads=heads)
    qe = tiny_m3.encode([q["text"] for q in QUERIES], role="query", heads=heads)
    ref = hybrid_scores(
        qe.dense @ de.dense.T,
        sparse_vector_scores(qe.sparse, de.sparse),
        multivector_list_scores(qe.multivector, de.multivector),
    )
    for qi, q in enumerate(QUERIES):
        want = {d["_id"]: float(s) for d, s in zip(DOCS, ref[qi])}
        assert set(got[q["_id"]]) == set(want)
        for doc, s in got[q["_id"]].items():
            assert s == pytest.approx(want[doc], abs=2e-3)  # float16 token vectors on disk

    trec = tmp_path / "run.trec"
    r = CliRunner().invoke(
        app, ["search", str(out), str(beir / "queries.jsonl"), "-o", str(trec), "-k", "2", "--fusion", "rrf"]
    )
    assert r.exit_code == 0, r.output
    lines = trec.read_text().splitlines()
    assert len(lines) == 4 and lines[0].split()[:2] == ["q1", "Q0"] and lines[0].split()[3] == "1"


def test_index_matryoshka_hnsw_and_errors(tiny_m3_path, beir, tmp_path):
    out = tmp_path / "idx"
    r = CliRunner().invoke(
        app,
        [
            "index",
            str(beir / "corpus.jsonl"),
            "-o",
            str(out),
            "--model",
            str(tiny_m3_path),
            "--dim",
            "16",
            "--dense-index",
            "hnsw",
        ],
    )
    assert r.exit_code == 0, r.output
    dense = load_index(out).components["dense"]
    assert dense.kind == "dense-hnsw" and dense.d == 16
    np.testing.assert_allclose(np.linalg.norm(np.asarray(dense.vectors), axis=1), 1.0, atol=1e-5)
    r = CliRunner().invoke(app, ["search", str(out), str(beir), "-o", str(tmp_path / "r.trec")])
    assert r.exit_code == 0, r.output

    r = CliRunner().invoke(app, ["index", str(beir), "-o", str(tmp_path / "x"), "--dense-index", "annoy"])
    assert (
        r.exit_code != 0
        and "unknown dense index 'annoy'; choose from: binary, exact, hnsw, int8, ivf, ivfpq"
        in str(r.exception)
    )
    r = CliRunner().invoke(app, ["search", str(out), str(beir), "-o", str(tmp_path / "r.csv")])
    assert r.exit_code != 0 and "use .trec (TREC) or .json" in str(r.exception)
    r = CliRunner().invoke(
        app, ["search", str(out), str(beir), "-o", str(tmp_path / "r.trec"), "--weights", "1,2"]
    )
    assert r.exit_code != 0 and "--weights '1,2': 2 number(s) where three are needed" in str(r.exception)
    r = CliRunner().invoke(app, ["search", str(tmp_path / "nope"), str(beir), "-o", str(tmp_path / "r.trec")])
    assert r.exit_code != 0 and "does not exist" in str(r.exception)


def test_index_built_in_one_folder_searches_from_another(tiny_m3_path, beir, tmp_path, monkeypatch):
    """Issue 18: the model is recorded as an absolute path, not as typed (relative)."""
    import shutil

    build = tmp_path / "build"
    shutil.copytree(tiny_m3_path, build / "model")
    monkeypatch.chdir(build)
    r = CliRunner().invoke(app, ["index", str(beir), "-o", "idx", "-m", "model", "--heads", "dense"])
    assert r.exit_code == 0, r.output + str(r.exception)
    assert load_index(build / "idx").meta["encoder"]["model"] == str((build / "model").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = CliRunner().invoke(app, ["search", str(build / "idx"), str(beir), "-o", "run.trec", "-k", "2"])
    assert r.exit_code == 0, r.output + str(r.exception)
    assert f"queries encoded with {(build / 'model').resolve()}" in r.output
    assert len((elsewhere / "run.trec").read_text().splitlines()) == 4


def test_multivector_index_backends_from_the_cli(tiny_m3_path, beir, tmp_path):
    """--multivector-index plaid: PLAID candidates, exact re-score from the token store (the same
    ranking as the exact index on this corpus); plaid-codes: no token store, codes only."""
    runs = {}
    for name in ("exact", "plaid", "plaid-codes"):
        out = tmp_path / name
        r = _index(beir, out, tiny_m3_path, "--multivector-index", name)
        assert r.exit_code == 0, r.output
        mv = load_index(out).components["multivector"]
        assert mv.kind == ("multivector" if name == "exact" else "multivector-plaid"), mv.kind
        assert (out / "multivector" / "vectors.npy").exists() == (name != "plaid-codes")
        if name == "plaid-codes":
            assert mv.store_kind == "codes" and mv.pq_eta == 4.0
        run = tmp_path / f"{name}.json"
        r = CliRunner().invoke(app, ["search", str(out), str(beir), "-o", str(run), "-k", "5"])
        assert r.exit_code == 0, r.output
        runs[name] = json.loads(run.read_text())
    for q in QUERIES:
        exact, plaid = runs["exact"][q["_id"]], runs["plaid"][q["_id"]]
        assert list(plaid) == list(exact)
        assert [plaid[d] for d in plaid] == pytest.approx([exact[d] for d in exact], abs=1e-5)
        assert set(runs["plaid-codes"][q["_id"]]) == set(exact)  # every document, approximate scores
    r = CliRunner().invoke(app, ["index", str(beir), "-o", str(tmp_path / "x"), "--model", str(tiny_m3_path),
                                 "--multivector-index", "colbert"])  # fmt: skip
    assert r.exit_code != 0 and "choose from: exact, plaid, plaid-codes" in r.output + str(r.exception)
