"""Row scorers of the indexes (the hybrid's batched path) == their id-based ``score``."""

from __future__ import annotations

import numpy as np

from embforge.index import ExactDenseIndex, MultiVectorIndex, SparseIndex
from helpers.index_testdata import clustered, random_multivector, random_sparse


def test_score_rows_equals_score_with_missing_and_deleted_rows():
    ids = [f"d{i}" for i in range(80)]
    rng = np.random.default_rng(0)
    rows = rng.integers(-1, 80, size=(5, 12))
    cases = [
        (ExactDenseIndex(), clustered(80, 16, seed=1), clustered(5, 16, seed=2)),
        (SparseIndex(), random_sparse(80, 50, seed=3), random_sparse(5, 50, seed=4)),
        (
            MultiVectorIndex(dtype="float32"),
            random_multivector(80, 8, seed=5),
            random_multivector(5, 8, seed=6),
        ),
    ]
    for idx, docs, queries in cases:
        idx.add(ids, docs)
        idx.delete(["d3", "d7"])
        as_ids = [[ids[r] if r >= 0 else "missing" for r in row] for row in rows]
        ref = np.array(idx.score(queries, as_ids))
        got = idx.score_rows(queries, rows)
        dead = np.isin(rows, [3, 7]) | (rows < 0)
        assert np.isnan(got[dead]).all(), type(idx).__name__
        np.testing.assert_allclose(got[~dead], ref[~dead], rtol=1e-5, atol=1e-6, err_msg=type(idx).__name__)
