"""bench/tune_fusion_grid.py: both grid paths give the same nDCG@10 floats, and the table says so."""

from __future__ import annotations

from helpers.paths import load_script

grid = load_script("bench/tune_fusion_grid.py", "tune_fusion_grid_bench")


def test_small_grid_is_identical_on_both_paths(tmp_path):
    out = tmp_path / "grid.md"
    grid.main(["--sets", "2", "--queries", "12", "--docs", "20", "--candidates", "5", "--out", str(out)])
    text = out.read_text()
    assert "identical=320/320" in text.splitlines()[-1]
    assert "CPU flags:" in text and "2 sets x 12 queries x 20 documents" in text


def test_dev_split_has_one_judged_document_per_query():
    ((mats, ds),) = grid.dev_split(1, 5, 3)
    assert mats["dense"].shape == (5, 3)
    assert [list(ds.qrels[q]) for q in ds.query_ids] == [["s0d0"], ["s0d1"], ["s0d2"], ["s0d0"], ["s0d1"]]
