"""Issue 18's Python API seams: top-level exports, similarity with FlagEmbedding's head names,
a single query string for Retriever.search, trained heads read from a checkpoint, demo_path."""

from __future__ import annotations

import numpy as np
import pytest

import embforge
from embforge.errors import DataError
from embforge.model.checkpoint import trained_heads
from embforge.resources import demo_names, demo_path
from embforge.scoring import embedding_scores
from embforge.search.retriever import Retriever, build_index, query_model, recorded_model


def test_top_level_exports():
    for name in ("Encoder", "Retriever", "demo_path", "load_beir", "evaluate_retrieval", "dense_scores"):
        assert getattr(embforge, name) is not None
    assert embforge.demo_path is demo_path


def test_demo_path():
    assert (demo_path("xquad-de") / "qrels" / "test.tsv").is_file()
    assert demo_names() == ["xquad-de", "xquad-en", "xquad-es"]
    with pytest.raises(DataError, match="choose from: xquad-de, xquad-en, xquad-es"):
        demo_path("xquad-ne")


def test_similarity_accepts_flagembedding_names(tiny_m3):
    a, b = ["what is a llama?", "a cat"], ["Llamas are camelids.", "dogs bark", "a cat sat"]
    qa = tiny_m3.encode(a, role="query", heads=("multivector", "sparse"))
    qb = tiny_m3.encode(b, role="document", heads=("multivector", "sparse"))
    got = tiny_m3.similarity(a, b, head="colbert")
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, embedding_scores(qa, qb, "multivector"), rtol=1e-5)
    np.testing.assert_allclose(
        tiny_m3.similarity(qa, qb, head="lexical_weights"), embedding_scores(qa, qb, "sparse")
    )


def test_retriever_search_takes_one_string(tiny_m3):
    idx = build_index(tiny_m3, ["d1", "d2"], ["a cat sat", "a dog barked"], heads=("dense",))
    r = Retriever(tiny_m3, idx)
    one, listed = r.search("a cat", k=2), r.search(["a cat"], k=2)
    assert len(one.ids) == 1 and one.ids == listed.ids


def test_trained_heads_and_recorded_model(tiny_m3_path, tmp_path):
    assert trained_heads(None) == ("dense",)  # the bundled sentence-transformers model
    assert trained_heads("bundled") == ("dense",)
    assert set(trained_heads(str(tiny_m3_path))) <= {"dense", "sparse", "multivector"}
    assert recorded_model(str(tiny_m3_path)) == str(tiny_m3_path.resolve())
    assert recorded_model("BAAI/bge-m3") == "BAAI/bge-m3" and recorded_model(None) is None
    (tmp_path / "idx" / "m").mkdir(parents=True)
    assert query_model(tmp_path / "idx", "m") == str(tmp_path / "idx" / "m")  # an old index's relative path
    assert query_model(tmp_path / "idx", "/abs/m") == "/abs/m"
