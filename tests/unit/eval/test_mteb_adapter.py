"""mteb (v2) evaluates an embforge model through the adapter, on tasks built from local files."""

from pathlib import Path

import numpy as np
import pytest

from embforge.eval import metrics as M  # noqa: E402
from embforge.eval import runner as R  # noqa: E402
from embforge.eval.datasets import load_beir, load_sts  # noqa: E402
from helpers.fake_encoder import FakeEncoder
from helpers.requires import require_module

mteb = require_module("mteb", "pip install -e '.[dev]'")
from embforge.eval.mteb_adapter import EmbforgeMTEBModel, local_retrieval_task, local_sts_task  # noqa: E402

DEMO = Path(__file__).parents[3] / "src/embforge/resources/demo"


def test_mteb_retrieval_score_equals_embforge_runner():
    model = EmbforgeMTEBModel(FakeEncoder(), name="fake")
    task = local_retrieval_task(DEMO / "xquad-en", max_queries=30)
    res = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    scores = res.task_results[0].scores["test"][0]
    data = load_beir(DEMO / "xquad-en", max_queries=30)
    ours = R.evaluate_retrieval(FakeEncoder(), data, heads=("dense",), bm25=False, health=False)
    assert scores["ndcg_at_10"] == pytest.approx(ours["heads"]["dense"]["ndcg@10"], abs=1e-4)
    assert scores["recall_at_100"] == pytest.approx(ours["heads"]["dense"]["recall@100"], abs=1e-4)


def test_mteb_sts_spearman_equals_embforge(tmp_path):
    p = tmp_path / "stsb-en-dev.csv"
    rows = [
        "a cat sat on the mat,a cat sat on a mat,5.0",
        "the dog runs,the sky is blue,0.5",
        "red car,a red car,4.0",
        "he plays guitar,she plays the flute,2.0",
        "rain today,it rains today,4.5",
    ]
    p.write_text("\n".join(rows) + "\n")
    model = EmbforgeMTEBModel(FakeEncoder(), name="fake")
    res = mteb.evaluate(model, local_sts_task(p), cache=None, show_progress_bar=False)
    got = res.task_results[0].scores["test"][0]["cosine_spearman"]
    sts = load_sts(p)
    e1 = FakeEncoder().encode(sts.sentences1, heads=("dense",)).dense
    e2 = FakeEncoder().encode(sts.sentences2, heads=("dense",)).dense
    assert got == pytest.approx(M.sts_correlations(e1, e2, np.array(sts.scores))["spearman"], abs=1e-6)


def test_similarity_is_cosine():
    m = EmbforgeMTEBModel(FakeEncoder())
    a = np.array([[3.0, 4.0], [1.0, 0.0]])
    s = m.similarity(a, a).numpy()
    np.testing.assert_allclose(np.diag(s), 1.0, rtol=1e-6)
    np.testing.assert_allclose(m.similarity_pairwise(a, a[::-1]).numpy(), [0.6, 0.6], rtol=1e-6)
