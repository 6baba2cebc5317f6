"""One hybrid-weights rule (issue 18): `parse_weights` reads weights for the Python API, both CLI
commands and the server, with the same parsing, checks and error text; a head left out weighs 0."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.errors import ConfigError
from embforge.eval.runner import evaluate_retrieval
from embforge.index import ExactDenseIndex
from embforge.scoring import parse_weights
from embforge.scoring.weights import WEIGHTS_HELP
from embforge.search import HybridIndex
from embforge.serve.schemas import SearchRequest
from embforge.types import Embeddings


@pytest.mark.parametrize(
    "value, want",
    [
        ("1,0.3,1", (1.0, 0.3, 1.0)),
        ((1, 0.3, 1), (1.0, 0.3, 1.0)),
        ({"sparse": 1}, (0.0, 1.0, 0.0)),
        ("sparse=1", (0.0, 1.0, 0.0)),
        ("dense=1, colbert=0.5", (1.0, 0.0, 0.5)),
        ({"lexical_weights": 0.3, "dense": 2}, (2.0, 0.3, 0.0)),
    ],
)
def test_forms_and_missing_heads_weigh_zero(value, want):
    assert parse_weights(value) == dict(zip(("dense", "sparse", "multivector"), want))


def test_none_means_the_caller_default():
    assert parse_weights(None) is None


@pytest.mark.parametrize(
    "value, problem",
    [
        ("1,2", "2 number(s) where three are needed"),
        ({"bm25": 1}, "unknown head 'bm25'"),
        ({"sprase": 1}, "did you mean 'sparse'?"),
        ("nan,1,1", "must be a finite number >= 0"),
        ({"dense": -1}, "must be a finite number >= 0"),
        ({"dense": True}, "must be a number, got bool"),
        ("0,0,0", "every weight is 0"),
        ("dense=1,2", "mix of head=weight pairs and bare numbers"),
        ({"colbert": 1, "multivector": 2}, "the multivector head is given twice"),
        ("a,b,c", "'a' is not a number"),
    ],
)
def test_bad_weights_name_the_value_the_problem_and_the_forms(value, problem):
    with pytest.raises(ConfigError) as e:
        parse_weights(value, "--weights")
    msg = str(e.value)
    assert msg.startswith("--weights ") and problem in msg and msg.endswith(WEIGHTS_HELP)


def _error_of(fn) -> str:
    with pytest.raises((ConfigError, ValidationError)) as e:
        fn()
    return str(e.value)


def test_search_eval_serve_and_python_api_share_one_rule(tmp_path):
    """The same bad value gives the same message everywhere (only the option's name differs)."""
    want = str(pytest.raises(ConfigError, parse_weights, {"bm25": 1.0}, "weights").value)
    # server: the request body is checked by the same function
    assert want in _error_of(lambda: SearchRequest.model_validate({"query": "x", "weights": {"bm25": 1.0}}))
    assert SearchRequest.model_validate({"query": "x", "weights": {"sparse": 1}}).weights == {
        "dense": 0.0,
        "sparse": 1.0,
        "multivector": 0.0,
    }
    # Python API: the hybrid index (per call and per query) and evaluate_retrieval
    idx = HybridIndex(dense=ExactDenseIndex())
    idx.add(["a", "b"], Embeddings(dense=np.eye(2, dtype=np.float32)))
    q = Embeddings(dense=np.eye(2, dtype=np.float32))
    assert want in _error_of(lambda: idx.search(q, k=1, weights={"bm25": 1.0}))
    assert want in _error_of(lambda: idx.search(q, k=1, weights=[None, {"bm25": 1.0}]))
    assert want in _error_of(lambda: HybridIndex(dense=ExactDenseIndex(), weights={"bm25": 1.0}))
    assert want in _error_of(lambda: evaluate_retrieval(None, None, weights={"bm25": 1.0}))  # type: ignore[arg-type]
    # CLI: search and eval, checked before any data or model is read
    tail = want.split("}: ", 1)[1]  # the problem and the fix, after the value
    for args in (
        [
            "search",
            str(tmp_path),
            str(tmp_path / "q.txt"),
            "-o",
            str(tmp_path / "r.trec"),
            "--weights",
            "bm25=1",
        ],
        ["eval", "--beir", str(tmp_path / "none"), "-o", str(tmp_path / "ev"), "--weights", "bm25=1"],
    ):
        r = CliRunner().invoke(app, args)
        assert isinstance(r.exception, ConfigError), r.output
        assert str(r.exception) == f"--weights 'bm25=1': {tail}"


def test_weights_that_zero_every_head_of_the_index_are_refused():
    idx = HybridIndex(dense=ExactDenseIndex())
    idx.add(["a", "b"], Embeddings(dense=np.eye(2, dtype=np.float32)))
    q = Embeddings(dense=np.eye(2, dtype=np.float32))
    with pytest.raises(ConfigError, match=r"give 0 to every head this index has \(dense\)"):
        idx.search(q, k=1, weights={"sparse": 1})
    assert idx.search(q, k=1, weights="1,0.3,1").ids == [["a"], ["b"]]  # weights for absent heads: fine
