"""Docs numbers come from bench/results (issue 18): the generated blocks are current."""

from __future__ import annotations

from helpers.paths import ROOT, load_script

bench_table = load_script("scripts/bench_table.py", "bench_table")


def test_generated_blocks_are_current():
    assert bench_table.main(["--check"]) == 0


def test_a_typed_number_is_replaced_by_the_results_file():
    doc = ROOT / "docs" / "training.md"
    stale = "<!-- generated: table bench/results/train.md -->\n| typed | 2.2x |\n<!-- end generated -->"
    out = bench_table.render(doc, stale)
    assert "2.2x" not in out and "| configuration | pairs/s |" in out
    assert "](../bench/results/train.md)" in out


def test_the_nth_table_of_a_results_file(tmp_path, monkeypatch):
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "x.md").write_text(
        "# x\n\n| a |\n| - |\n| 1 |\n\ntext\n\n| b |\n| - |\n| 2 |\n", encoding="utf-8"
    )
    monkeypatch.setattr(bench_table, "ROOT", tmp_path)
    doc = tmp_path / "docs" / "d.md"
    block = "<!-- generated: table bench/results/x.md {} -->\ntyped 0.123\n<!-- end generated -->"
    first, second = (bench_table.render(doc, block.format(n)) for n in ("", "2"))
    assert "| 1 |" in first and "| 2 |" not in first and "0.123" not in first
    assert "| 2 |" in second and "| 1 |" not in second and "](../bench/results/x.md)" in second
