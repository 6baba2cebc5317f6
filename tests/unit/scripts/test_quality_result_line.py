"""bench/quality_report.py's RESULT line: sentence-transformers' dense only when it was run, the
tuned hybrid only when its tuning covers every seed of the shipped variant."""

from __future__ import annotations

from helpers.paths import load_script

report = load_script("bench/quality_report.py", "quality_report_bench")


def _summary(with_st: bool, tuned_seeds: list[int]) -> dict:
    shipped = {"dense": (0.5, 0.01), "sparse": (0.6, 0.0), "multivector": (0.7, 0.0), "hybrid": (0.65, 0.0)}
    shipped[report.TUNED_COL] = (0.72, 0.0)
    variants = {"m3_terms": shipped} | ({"st": {"dense": (0.48, 0.0)}} if with_st else {})
    return {
        "variants": variants,
        "base": {"dense_bm25_rrf": 0.52, "bm25": 0.63},
        "tuned_ref": {"m3_terms": {"seeds": tuned_seeds}},
    }


def test_result_line_with_every_part():
    line = report.result_line(_summary(True, [0, 1]), {"m3_terms": {0: {}, 1: {}}}, "m3_terms")
    assert line == (
        "RESULT st_ndcg10=0.4800 embforge_dense_ndcg10=0.5000 embforge_hybrid_ndcg10=0.6500 "
        "embforge_hybrid_tuned_ndcg10=0.7200 best_single_head_ndcg10=0.7000 bm25_rrf_ndcg10=0.5200 "
        "sparse_ndcg10=0.6000 bm25_ndcg10=0.6300"
    )


def test_result_line_leaves_out_what_was_not_run():
    line = report.result_line(_summary(False, [0]), {"m3_terms": {0: {}, 1: {}}}, "m3_terms")
    assert line.startswith("RESULT embforge_dense_ndcg10=0.5000 ")
    assert "st_ndcg10" not in line and "nan" not in line
    assert "embforge_hybrid_tuned" not in line  # tuned on seed 0 only, evaluated on 0 and 1


def _tuned_run(queries: int) -> dict:
    t = {"paper_default_ndcg@10": 0.5, "decision": "best grid point"}
    t["best"] = {"fusion": "weighted", "weights": {"dense": 1.0, "sparse": 2.0, "multivector": 1.0}, "ndcg@10": 0.6}
    fusion = {"fusion": "weighted", "weights": {"dense": 1.0, "sparse": 2.0, "multivector": 1.0}, "tuned": t}
    dev = {"dev-ar": {"queries": queries, "docs": 240}, "dev-en": {"queries": queries, "docs": 240}}
    return {"fusion": fusion, "dev": dev | {"dev-nli-en": {"queries": queries, "docs": 80}}}


def test_fusion_table_states_each_runs_dev_size_when_they_differ():
    same = "\n".join(report.fusion_table({"tuned": {"base": {-1: _tuned_run(25)}, "m3_terms": {0: _tuned_run(25)}}}))
    assert "2 languages x 25 queries" in same and "sampled to 240 documents;" in same
    assert "(Q=" not in same
    mixed = "\n".join(report.fusion_table({"tuned": {"base": {-1: _tuned_run(25)}, "m3_terms": {0: _tuned_run(100)}}}))
    assert "2 languages x Q queries" in mixed and "the 'dev sets' column gives each run's" in mixed
    assert "| base model | - | 2 xquad + 1 nli (Q=25, D=240) |" in mixed
    assert "| 0 | 2 xquad + 1 nli (Q=100, D=240) |" in mixed


def test_stage_commands_name_the_dev_size_a_tuning_run_took_by_default(tmp_path):
    import json
    import os

    recs = [
        (["--workdir", "w", "--stage", "tune"], {"stage": "tune", "dev_queries": 25}),
        (["--workdir", "w", "--stage", "tune", "--dev-queries", "100"], {"stage": "tune", "dev_queries": 100}),
        (["--workdir", "w", "--stage", "base"], {"stage": "base", "dev_queries": 300}),
    ]
    for i, (argv, args) in enumerate(recs):
        p = tmp_path / f"args-{i}.json"
        p.write_text(json.dumps({"argv": argv, "args": args}))
        os.utime(p, (i, i))
    assert report.stage_commands(tmp_path) == [
        "- `python bench/quality.py --workdir w --stage tune --dev-queries 25`",
        "- `python bench/quality.py --workdir w --stage tune --dev-queries 100`",
        "- `python bench/quality.py --workdir w --stage base`",
    ]


def test_split_cell_names_the_cross_validated_gain_when_the_run_has_one():
    split = {
        "decision": "split",
        "num_queries_low": 1836,
        "weights": {"dense": 0.25, "sparse": 1.0, "multivector": 4.0},
        "low_weights": {"dense": 0.25, "sparse": 2.0, "multivector": 1.0},
        "gain": 0.0039,
        "gain_ci95": [-0.0001, 0.008],
    }
    older = report._split_cell({"low_coverage": split})
    assert older.endswith("gain +0.0039 [95% -0.0001, +0.0080])") and "cross-validated" not in older
    cell = report._split_cell({"low_coverage": split | {"cv_gain": 0.0029}})
    assert cell == (
        "split (1836 low queries: 0.25 / 2 / 1; others 0.25 / 1 / 4; "
        "gain +0.0039 [95% -0.0001, +0.0080]; cross-validated gain +0.0029)"
    )
    assert report._split_cell({}) == "n/a"


def test_stage_wall_minutes_adds_up_every_finished_stage(tmp_path):
    import json

    for name, wall in (("mix", 60.0), ("base", 120.0), ("m3_terms-s0", 90.0), ("tuned-base", 30.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"wall_s": wall, "result": {}}))
    (tmp_path / "args-1.json").write_text(json.dumps({"argv": [], "wall_s": 999}))  # not a stage
    (tmp_path / "partial.json").write_text(json.dumps([1, 2]))  # not a stage record
    assert report.stage_wall_minutes(tmp_path) == (5.0, 4)
