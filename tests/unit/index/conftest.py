"""Fixtures for the index tests; helpers live in tests/helpers/index_testdata.py."""

from __future__ import annotations

import pytest

from embforge.types import Embeddings  # noqa: E402
from helpers.index_testdata import clustered, random_multivector, random_sparse


@pytest.fixture
def docs() -> Embeddings:
    n = 600
    return Embeddings(
        dense=clustered(n, 32, seed=1),
        sparse=random_sparse(n, 300, seed=2),
        multivector=random_multivector(n, 16, seed=3),
    )


@pytest.fixture
def queries() -> Embeddings:
    n = 12
    return Embeddings(
        dense=clustered(n, 32, seed=11),
        sparse=random_sparse(n, 300, seed=12, max_terms=8),
        multivector=random_multivector(n, 16, seed=13, max_tokens=6),
    )


@pytest.fixture
def doc_ids() -> list[str]:
    return [f"doc{i}" for i in range(600)]
