"""bench/search_multivector.py's codec statistics: the exact 10th/11th score gap of the shortlists and,
for a decoded re-score, its score error and how far its misses fall below the exact 10th."""

from __future__ import annotations

import numpy as np

from helpers.paths import load_script

mv = load_script("bench/search_multivector.py", "search_multivector_bench")


def test_boundary_is_the_gap_between_the_kth_and_next_exact_score():
    ex = np.array([[0.9, 0.5, 0.7, 0.6, -np.inf], [0.1, 0.4, 0.3, 0.2, 0.35]])
    b = mv._boundary(ex, kth=np.array([0.7, 0.35]), k=2)
    # query 0: 2nd = 0.7, 3rd = 0.6 -> 0.1; query 1: 2nd = 0.35, 3rd = 0.3 -> 0.05
    assert np.isclose(b["gap_median"], 0.075) and np.isclose(b["kth_mean"], 0.525)
    assert b["gap_q25"] <= b["gap_median"] <= b["gap_q75"]


def test_miss_stats_measure_only_the_misses_and_the_score_error():
    kth = np.array([1.0, 2.0])
    got = np.array([[1.2, 0.9], [2.5, 2.0]])  # one miss: 0.9 is 10% below query 0's exact 2nd score
    ex = np.array([[1.2, 0.9, 1.0], [2.5, 2.0, 1.0]])
    approx = ex + np.array([[0.1, -0.1, 0.1], [-0.1, 0.1, -0.1]])
    s = mv._miss_stats(got, kth, approx, ex, k=2)
    assert np.isclose(s["miss_gap_median"], 0.1) and np.isclose(s["miss_gap_p90"], 0.1)
    assert np.isclose(s["score_err_std"], 0.1)
    exact = mv._miss_stats(ex[:, :2], np.array([0.9, 2.0]), ex, ex, k=2)
    assert exact == {"score_err_std": 0.0}  # no miss: no gap statistics


def test_codec_table_shows_the_new_columns_and_old_rows_without_them():
    brute = {"docs": 10, "tokens": 100, "dim": 4}
    row = {"codec": "residual PQ 2x8-bit", "token_bytes": 2, "recall": 0.9, "score_err_std": 0.01}
    row |= {"miss_gap_median": 0.003, "miss_gap_p90": 0.02}
    old = {"codec": "residual SQ8", "token_bytes": 4, "recall": 0.95}
    c = {"set": "real", "ndocs": 8, "nprobe": 1, "nlist": 4, "rows": [row, old]}
    c["boundary"] = {"gap_q25": 0.0001, "gap_median": 0.0005, "gap_q75": 0.001, "kth_mean": 0.5}
    text = "\n".join(mv._codec_lines({"brute-real": brute, "codecs-plaid-real-nlist4": c}))
    assert "median 0.0005" in text and "0.10% of it" in text
    assert "| residual PQ 2x8-bit | 4 | 0.500 | 0.900 | 0.0100 | 0.30% / 2.00% |" in text
    assert "| residual SQ8 | 6 | 0.750 | 0.950 | - | - |" in text


def test_report_names_the_model_whose_head_made_the_vectors():
    assert "untrained multivector head" in mv._model_words("bundled MiniLM")
    words = mv._model_words("/tmp/q13/m3_terms-s0/final")
    assert "`/tmp/q13/m3_terms-s0/final`" in words and "untrained" not in words
