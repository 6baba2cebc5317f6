"""A model folder's fusion.json (embforge tune-fusion) changes the hybrid in eval, index/search and serve."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.errors import ConfigError
from embforge.model.encoder import Encoder
from embforge.model.fusion import CoverageSplit, ModelFusion, read_fusion, write_fusion
from embforge.search.retriever import Retriever

DEMO = Path(__file__).parents[2] / "src/embforge/resources/demo"
pytestmark = pytest.mark.integration
SPARSE_ONLY = ModelFusion("weighted", {"dense": 0.0, "sparse": 1.0, "multivector": 0.0})
DENSE_ONLY = ModelFusion("weighted", {"dense": 1.0, "sparse": 0.0, "multivector": 0.0})


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    """A small slice of the bundled xquad-en: 12 judged test queries, their paragraphs and 18 others."""
    src, root = DEMO / "xquad-en", tmp_path_factory.mktemp("beir")
    qrels = [x.split("\t") for x in (src / "qrels/test.tsv").read_text().splitlines()[1:]][::9][:12]
    docs = [json.loads(x) for x in (src / "corpus.jsonl").read_text().splitlines()]
    keep = {d for _, d, _ in qrels} | {d["_id"] for d in docs[::15][:18]}
    qids = {q for q, _, _ in qrels}
    (root / "qrels").mkdir()
    (root / "qrels/test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in qrels)
    )
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs if d["_id"] in keep))
    queries = [x for x in (src / "queries.jsonl").read_text().splitlines() if json.loads(x)["_id"] in qids]
    (root / "queries.jsonl").write_text("\n".join(queries) + "\n")
    return root


@pytest.fixture
def model(tiny_m3_path, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_m3_path, out)
    return out


def _eval(model: Path, beir: Path, out: Path, *extra: str) -> dict:
    args = ["eval", "-m", str(model), "--beir", str(beir)]
    r = CliRunner().invoke(
        app, [*args, "--mrl-dims", "none", "--no-bm25", "--no-plots", "-o", str(out), *extra]
    )
    assert r.exit_code == 0, r.output
    return json.loads((out / "report.json").read_text())["runs"]["model"]["retrieval"][beir.name]


def test_fusion_file_round_trip_and_errors(model):
    assert read_fusion(model) is None and Encoder.from_pretrained(str(model)).fusion is None
    f = ModelFusion("zscore", {"dense": 1.0, "sparse": 0.5, "multivector": 2.0}, tuned={"gain": 0.02})
    write_fusion(model, f)
    assert read_fusion(model) == f
    enc = Encoder.from_pretrained(str(model))
    assert enc.fusion == f
    enc.save_pretrained(str(model.parent / "copy"))  # the fusion travels with the model
    assert read_fusion(model.parent / "copy") == f
    (model / "fusion.json").write_text('{"fusion": "borda"}')
    with pytest.raises(ConfigError, match=r"fusion.json: fusion 'borda' is not known; choose from: .*rrf"):
        read_fusion(model)


def test_eval_uses_the_model_fusion(model, beir, tmp_path):
    base = _eval(model, beir, tmp_path / "a")
    assert base["hybrid_fusion"] == "weighted"
    write_fusion(model, SPARSE_ONLY)
    sparse = _eval(model, beir, tmp_path / "b")
    assert sparse["heads"]["hybrid"] == sparse["heads"]["sparse"]
    write_fusion(model, DENSE_ONLY)
    dense = _eval(model, beir, tmp_path / "c")
    assert dense["heads"]["hybrid"] == dense["heads"]["dense"]
    assert dense["heads"]["dense"] != dense["heads"]["sparse"]  # so the fusion changed the ranking
    explicit = _eval(model, beir, tmp_path / "d", "--weights", "0,1,0")  # an explicit option wins
    assert explicit["heads"]["hybrid"] == explicit["heads"]["sparse"]
    write_fusion(model, ModelFusion("zscore", {"dense": 1.0, "sparse": 1.0, "multivector": 1.0}))
    z = _eval(model, beir, tmp_path / "e")
    assert z["hybrid_fusion"] == "zscore" and 0 < z["heads"]["hybrid"]["ndcg@10"] <= 1
    assert _eval(model, beir, tmp_path / "f", "--fusion", "rrf")["hybrid_fusion"] == "rrf"


def _texts(beir: Path, k: int = 5) -> list[str]:
    return [json.loads(x)["text"] for x in (beir / "queries.jsonl").read_text().splitlines()[:k]]


def test_index_and_search_use_the_model_fusion(model, beir, tmp_path):
    write_fusion(model, SPARSE_ONLY)
    idx = tmp_path / "idx"
    r = CliRunner().invoke(
        app,
        ["index", str(beir), "-o", str(idx), "-m", str(model), "--heads", "dense,sparse,multivector"],
    )
    assert r.exit_code == 0, r.output
    config = json.loads((idx / "index.json").read_text())["config"]
    assert config["fusion"] == "weighted" and config["weights"] == dict(SPARSE_ONLY.weights)
    hits = Retriever.load(idx).search(_texts(beir), k=5)
    assert hits.scores == hits.per_head["sparse"]  # ranked by the sparse head alone
    write_fusion(model, DENSE_ONLY)  # tuned after indexing: search follows the model
    hits = Retriever.load(idx).search(_texts(beir), k=5)
    assert hits.scores == hits.per_head["dense"]
    hits = Retriever.load(idx).search(_texts(beir), k=5, weights=(0.0, 1.0, 0.0))  # explicit wins
    assert hits.scores == hits.per_head["sparse"]
    run = tmp_path / "run.json"
    r = CliRunner().invoke(app, ["search", str(idx), str(beir), "-o", str(run), "-k", "3"])
    assert r.exit_code == 0, r.output
    got = json.loads(run.read_text())
    ref = Retriever.load(idx).search(_texts(beir, 1), k=3)
    assert sorted(next(iter(got.values())).values(), reverse=True) == pytest.approx(
        ref.per_head["dense"][0], abs=1e-4
    )


def test_serve_uses_the_model_fusion(model, beir, tmp_path):
    from fastapi.testclient import TestClient

    from embforge.serve import ServeConfig, create_app

    idx = tmp_path / "idx"
    r = CliRunner().invoke(
        app,
        ["index", str(beir), "-o", str(idx), "-m", str(model), "--heads", "dense,sparse,multivector"],
    )
    assert r.exit_code == 0, r.output
    write_fusion(model, SPARSE_ONLY)
    enc = Encoder.from_pretrained(str(model))
    with TestClient(create_app(enc, index=str(idx), config=ServeConfig())) as c:
        body = {"query": _texts(beir, 2), "k": 5}
        res = c.post("/v1/search", json=body).json()
        for q in res["data"]:
            assert [h["score"] for h in q["hits"]] == pytest.approx(
                [h["scores"]["sparse"] for h in q["hits"]]
            )
        res = c.post(
            "/v1/search", json={**body, "weights": {"dense": 1, "sparse": 0, "multivector": 0}}
        ).json()
        for q in res["data"]:
            assert [h["score"] for h in q["hits"]] == pytest.approx([h["scores"]["dense"] for h in q["hits"]])


def test_tune_fusion_cli_writes_fusion_json(model, beir):
    args = ["tune-fusion", str(beir), "-m", str(model), "--split", "test"]
    r = CliRunner().invoke(app, [*args, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "paper weighted 1,0.3,1:" in r.output and not (model / "fusion.json").exists()
    assert "tune-fusion: 12 dev queries in all; below about 1000" in r.output
    r = CliRunner().invoke(app, [*args, "--min-gain", "0"])
    assert r.exit_code == 0, r.output
    f = Encoder.from_pretrained(str(model)).fusion
    assert f is not None and f.tuned["dev"]["split"] == "test" and f.tuned["margin"] == 0
    assert f.tuned["num_queries"] == 12 and len(f.tuned["top"]) == 10
    r = CliRunner().invoke(app, ["tune-fusion", str(beir), "-m", str(beir)])
    assert r.exit_code != 0 and "not a model directory" in str(r.exception)


def test_tune_fusion_cli_scores_several_dev_sets_by_their_mean(model, beir):
    """Two dev folders (here the same one twice): every grid point scores the mean over both."""
    args = ["tune-fusion", str(beir), str(beir), "-m", str(model), "--split", "test", "--min-gain", "0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    f = Encoder.from_pretrained(str(model)).fusion
    assert f is not None and f.tuned["dev"]["beir"] == [str(beir), str(beir)]
    assert f.tuned["num_queries"] == 24 and f.tuned["dev_sets"] == [beir.name, beir.name]
    one = CliRunner().invoke(app, [*args[:2], *args[3:], "--dry-run"])
    assert one.exit_code == 0, one.output
    # same scores: the mean of two equal sets (the coverage line below it counts the queries of both)
    assert one.output.split("paper weighted")[1].splitlines()[0] in r.output


def test_rerank_top_uses_the_model_fusion_and_matches_exact_candidates(model, beir, tmp_path):
    write_fusion(model, SPARSE_ONLY)
    sparse = _eval(model, beir, tmp_path / "a", "--rerank-top", "20")
    assert sparse["mode"].startswith("rerank-top") and sparse["hybrid_fusion"] == "weighted"
    assert sparse["heads"]["hybrid"] == sparse["heads"]["sparse"]
    write_fusion(model, DENSE_ONLY)
    dense = _eval(model, beir, tmp_path / "b", "--rerank-top", "20")
    assert dense["heads"]["hybrid"] == dense["heads"]["dense"] != dense["heads"]["sparse"]
    # one candidate path: a z-score hybrid ranks the same dense + sparse union in both modes
    z = ("--fusion", "zscore", "--weights", "1,0.3,1")
    exact, rerank = (
        _eval(model, beir, tmp_path / "c", *z),
        _eval(model, beir, tmp_path / "d", *z, "--rerank-top", "100"),
    )
    assert exact["mode"] == "exact" and exact["hybrid_fusion"] == rerank["hybrid_fusion"] == "zscore"
    # the index's multi-vector scorer sums in another order (differences ~5e-5 flip near-ties of
    # the tiny random model, and which ties flip depends on the BLAS build), so the metrics agree to
    # within one query of the set rather than bit for bit
    one_query = 1.0 / 12 + 1e-9
    for k in ("ndcg@10", "recall@10", "mrr@10"):
        assert exact["heads"]["hybrid"][k] == pytest.approx(rerank["heads"]["hybrid"][k], abs=one_query), k


def test_hybrid_bm25_row_is_an_option(model, beir, tmp_path):
    plain = _eval(model, beir, tmp_path / "a")
    assert "hybrid+bm25" not in plain["heads"]
    for extra in ((), ("--rerank-top", "20")):
        got = _eval(model, beir, tmp_path / f"b{len(extra)}", "--hybrid-bm25", *extra)
        assert 0 < got["heads"]["hybrid+bm25"]["ndcg@10"] <= 1
        assert got["heads"]["hybrid"] == plain["heads"]["hybrid"] or extra  # the hybrid row is unchanged
    r = CliRunner().invoke(
        app,
        [
            "eval",
            "-m",
            str(model),
            "--beir",
            str(beir),
            "--heads",
            "dense",
            "--hybrid-bm25",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert r.exit_code != 0 and "hybrid+bm25" in str(r.exception)


def test_encoder_similarity_hybrid_uses_the_model_fusion(model):
    import numpy as np

    q, d = (
        ["who wrote hamlet?", "capital of france"],
        ["Hamlet is a play by Shakespeare.", "Paris is in France."],
    )
    enc = Encoder.from_pretrained(str(model))
    parts = {h: np.asarray(enc.similarity(q, d, head=h)) for h in ("dense", "sparse", "multivector")}
    paper = parts["dense"] + 0.3 * parts["sparse"] + parts["multivector"]
    assert np.allclose(enc.similarity(q, d, head="hybrid"), paper, atol=1e-5)
    write_fusion(model, SPARSE_ONLY)
    enc = Encoder.from_pretrained(str(model))
    assert np.allclose(enc.similarity(q, d, head="hybrid"), parts["sparse"], atol=1e-5)


def _split_fusion(threshold: float) -> ModelFusion:
    """Dense alone for well-covered queries, sparse alone at or below ``threshold`` chars/token."""
    return ModelFusion("weighted", dict(DENSE_ONLY.weights), low_coverage=CoverageSplit(dict(SPARSE_ONLY.weights), threshold))


def test_coverage_split_round_trips_and_refuses_a_bad_entry(model):
    f = _split_fusion(1.5)
    write_fusion(model, f)
    assert read_fusion(model) == f and Encoder.from_pretrained(str(model)).fusion == f
    (model / "fusion.json").write_text('{"fusion": "weighted", "low_coverage": {"weights": {"sparse": 1}}}')
    with pytest.raises(ConfigError, match=r"low_coverage needs 'max_chars_per_token'"):
        read_fusion(model)
    (model / "fusion.json").write_text(
        '{"fusion": "weighted", "low_coverage": {"max_chars_per_token": 1.5, "weights": {"lexical": 1}}}'
    )
    with pytest.raises(ConfigError, match=r"low_coverage weights .*lexical"):
        read_fusion(model)


def test_coverage_split_reaches_eval_search_serve_and_similarity(model, beir, tmp_path):
    """Each query is ranked by the weights of its side of the split, in every path that fuses."""
    from fastapi.testclient import TestClient

    from embforge.serve import ServeConfig, create_app
    from embforge.text.coverage import chars_per_token

    texts = _texts(beir, 6)
    enc = Encoder.from_pretrained(str(model))
    cpt = chars_per_token(texts, enc.tokenizer)
    threshold = float(np.median(cpt))
    low = cpt <= threshold
    assert 0 < low.sum() < len(texts)  # both sides are present
    write_fusion(model, _split_fusion(1e6))  # every query is low-coverage: the sparse head alone
    every = _eval(model, beir, tmp_path / "a")
    assert every["heads"]["hybrid"] == every["heads"]["sparse"]
    assert every["hybrid_low_coverage"]["num_queries"] == 12
    rerank = _eval(model, beir, tmp_path / "b", "--rerank-top", "20")
    assert rerank["heads"]["hybrid"] == rerank["heads"]["sparse"]
    explicit = _eval(model, beir, tmp_path / "c", "--weights", "1,0,0")  # an explicit option wins
    assert explicit["heads"]["hybrid"] == explicit["heads"]["dense"] and "hybrid_low_coverage" not in explicit

    write_fusion(model, _split_fusion(threshold))
    idx = tmp_path / "idx"
    r = CliRunner().invoke(app, ["index", str(beir), "-o", str(idx), "-m", str(model)])
    assert r.exit_code == 0, r.output
    hits = Retriever.load(idx).search(texts, k=5)
    for i, is_low in enumerate(low):
        assert hits.scores[i] == hits.per_head["sparse" if is_low else "dense"][i], i
    with TestClient(create_app(Encoder.from_pretrained(str(model)), index=str(idx), config=ServeConfig())) as c:
        res = c.post("/v1/search", json={"query": texts, "k": 5}).json()
    for i, q in enumerate(res["data"]):
        head = "sparse" if low[i] else "dense"
        assert [h["score"] for h in q["hits"]] == pytest.approx([h["scores"][head] for h in q["hits"]]), i
    enc = Encoder.from_pretrained(str(model))
    docs = [json.loads(x)["text"] for x in (beir / "corpus.jsonl").read_text().splitlines()[:7]]
    fused = enc.similarity(texts, docs, head="hybrid")
    for i, is_low in enumerate(low):
        ref = np.asarray(enc.similarity(texts[i : i + 1], docs, head="sparse" if is_low else "dense"))
        assert np.allclose(fused[i], ref[0], atol=1e-5), i
