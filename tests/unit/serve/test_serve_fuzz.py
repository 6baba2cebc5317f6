"""Property-based fuzz of the HTTP API (issue 14): schemathesis cases from the app's own OpenAPI
schema, and hypothesis bodies (any bytes, any JSON with lone surrogates, NaN, huge numbers and
deep nesting), sent to a live in-process server. Property: never a 5xx, and every error is
OpenAI's ``{"error": {...}}`` in valid UTF-8. A small budget runs in ``make test``; the ``slow``
twins run a longer one in ``make test-slow``.
"""

from __future__ import annotations

import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embforge.serve import ServeConfig, create_app

from .test_serve_hostile import DenseIndex

FAST, SLOW = 12, 400  # examples per property: make test / make test-slow


@pytest.fixture(scope="module")
def fuzz_target(minilm_tokenizer, fake_encoder_cls, module_server):
    """(url, app) of a live server over a FakeEncoder with a dense index."""
    enc = fake_encoder_cls(minilm_tokenizer)
    cfg = ServeConfig(model_name="fake", max_inputs=16, max_body_bytes=1 << 20, max_chars_per_input=2000)
    app = create_app(enc, index=DenseIndex(enc, ["a cat", "a dog", "the sea"]), config=cfg)
    return module_server(app), app


def _check(status: int, body: bytes, what: object) -> None:
    assert status < 500, (status, body[:300], str(what)[:300])
    text = body.decode("utf-8")  # valid UTF-8, always
    if status >= 400:
        err = json.loads(text)["error"]
        assert err["message"] and "type" in err and "code" in err, err


# ---------------------------------------------------------------- schemathesis (schema-driven)
def _schema_cases(app, budget: int, url: str) -> None:
    schema = schemathesis.openapi.from_dict(app.openapi())
    for path, method in (("/v1/embeddings", "POST"), ("/v1/search", "POST"), ("/v1/models", "GET")):
        strategy = schema[path][method].as_strategy()

        @settings(max_examples=budget, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=strategy)
        def run(case):
            r = case.call(base_url=url, timeout=30)
            _check(r.status_code, r.content, (case.body, case.headers))

        run()


def test_fuzz_schema_driven_api_never_5xx(fuzz_target):
    url, app = fuzz_target
    _schema_cases(app, FAST, url)


@pytest.mark.slow
def test_fuzz_schema_driven_api_never_5xx_long(fuzz_target):
    url, app = fuzz_target
    _schema_cases(app, SLOW, url)


# ---------------------------------------------------------------- hypothesis (hostile JSON and bytes)
_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_TEXT = st.text(st.one_of(st.characters(), _SURROGATES), max_size=40)
_NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 101, 102, 7592, 30521, 30522, 2**63]),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=20,
)
_FIELDS = st.sampled_from(
    ["input", "query", "model", "dimensions", "encoding_format", "role", "dense", "sparse", "sparse_tokens"]
    + ["multivector", "quantization", "truncate", "k", "weights", "fusion", "return_scores", "user"]
)
_BODIES = st.dictionaries(st.one_of(_FIELDS, _TEXT), _JSON, max_size=6)


def _dump(value) -> bytes:
    # allow_nan: NaN/Infinity go on the wire as Python writes them; surrogatepass keeps lone surrogates
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _hostile_json(url: str, budget: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:

        @settings(max_examples=budget, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(path=st.sampled_from(["/v1/embeddings", "/v1/search"]), body=_BODIES, ascii_=st.booleans())
        def run(path, body, ascii_):
            if "input" not in body and path.endswith("embeddings"):
                body["input"] = "hello"
            raw = json.dumps(body, allow_nan=True).encode() if ascii_ else _dump(body)
            r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
            _check(r.status_code, r.content, raw)

        run()


def _hostile_bytes(url: str, budget: int) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:

        @settings(max_examples=budget, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(path=st.sampled_from(["/v1/embeddings", "/v1/search"]), raw=st.binary(max_size=200))
        def run(path, raw):
            r = client.post(path, content=raw, headers={"Content-Type": "application/json"})
            _check(r.status_code, r.content, raw)

        run()


def test_fuzz_hostile_json_never_5xx(fuzz_target):
    _hostile_json(fuzz_target[0], FAST * 5)


def test_fuzz_any_bytes_never_5xx(fuzz_target):
    _hostile_bytes(fuzz_target[0], FAST * 3)


@pytest.mark.slow
def test_fuzz_hostile_json_and_bytes_never_5xx_long(fuzz_target):
    _hostile_json(fuzz_target[0], SLOW * 2)
    _hostile_bytes(fuzz_target[0], SLOW)
