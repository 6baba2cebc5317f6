import json

import pytest

from embforge.eval import report as R


def _run(shift: float) -> dict:
    def heads(base):
        return {
            h: {"ndcg@10": base + i * 0.05 + shift, "recall@100": 0.9, "mrr@10": 0.5, "map": 0.4}
            for i, h in enumerate(("bm25", "dense", "sparse", "multivector", "hybrid"))
        }

    return {
        "retrieval": {
            f"xquad-{lang}": {
                "language": lang,
                "num_queries": 10,
                "num_docs": 5,
                "heads": heads(b),
                "mrl": {"32": b, "64": b + 0.1, "128": b + 0.15, "384": b + 0.2},
            }
            for lang, b in (("en", 0.4), ("de", 0.3), ("es", 0.35))
        },
        "sts": {"stsb-en": {"language": "en", "spearman": 0.8 + shift, "pearson": 0.79}},
        "bitext": {"tatoeba-deu-eng": {"language": "de", "accuracy@1": 0.7}},
        "health": {"xquad-en": {"alignment": 0.5, "uniformity": -2.0}},
    }


def test_write_report_json_md_and_plots(tmp_path):
    rep = R.build_report(
        {"base": _run(0.0), "fine-tuned": _run(0.1)},
        model={"path": "m"},
        data={"dir": "d"},
        command=["embforge", "eval", "x"],
    )
    files = R.write_report(rep, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["schema"] == R.SCHEMA and data["command"] == "embforge eval x"
    assert data["versions"]["embforge"] and data["created_utc"].endswith("+00:00")
    assert data["runs"]["fine-tuned"]["retrieval"]["xquad-en"]["heads"]["dense"]["ndcg@10"] == pytest.approx(
        0.55
    )
    md = (tmp_path / "report.md").read_text()
    assert "| data | measure | base | fine-tuned | fine-tuned - base |" in md
    assert "| xquad-en | dense ndcg@10 | 0.450 | 0.550 | +0.100 |" in md
    assert "![Side by side (base vs fine-tuned)](comparison.png)" in md
    assert "![Matryoshka curve (nDCG@10 vs dim)](mrl_curve.png)" in md
    for name in ("heads_xquad-en.png", "mrl_curve.png", "languages.png", "comparison.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in files.values()} >= {"report.json", "report.md", "languages.png"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "report.json"
    R.atomic_write_text(p, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(R.os, "replace", boom)
    with pytest.raises(OSError):
        R.atomic_write_text(p, "new")
    assert p.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


def test_unique_labels_never_collide():
    assert R.unique_labels(["sts-dev", "sts-dev", "x"], ["a/sts-dev.csv", "b/sts-dev.csv", "x.csv"]) == [
        "a/sts-dev",
        "b/sts-dev",
        "x",
    ]
    assert R.unique_labels(["m", "m"], ["m", "m"]) == ["m", "m#2"]


def test_format_comparison_shows_every_run_and_the_change():
    rep = R.build_report({"base": _run(0.0), "tuned": _run(0.1), "other": _run(-0.1)}, command="x")
    text = R.format_comparison(rep)
    head = text.splitlines()[0].split()
    assert head[:5] == ["data", "measure", "base", "tuned", "other"] and "+0.100" in text and "-0.100" in text
