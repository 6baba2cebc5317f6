"""bench/serve.py's single-client rounds: a new run moves the earlier run's rounds to the piece's
history, and the RESULT pools every run of the current server code (src/ tree), none other."""

from __future__ import annotations

import json

import numpy as np

from helpers.paths import load_script

serve = load_script("bench/serve.py", "serve_bench")


def _rounds(*ratios):
    return [
        {"server": "s", "round": i, "bare_p50_ms": 1.0, "p50": r, "ratio": r} for i, r in enumerate(ratios)
    ]


def test_save_piece_keeps_earlier_rounds_in_history(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "ROWS", tmp_path / "rows.json")
    trees = iter(["aaa", "aaa", "bbb"])
    monkeypatch.setattr(serve, "src_tree", lambda: next(trees))
    serve.save_piece("embforge-onnx-int8", [{"clients": 1}, *_rounds(1.0, 2.0)])
    serve.save_piece("embforge-onnx-int8", _rounds(3.0, 4.0, 5.0))
    piece = json.loads((tmp_path / "rows.json").read_text())["embforge-onnx-int8"]
    assert piece["src"] == "aaa" and [len(h["rounds"]) for h in piece["history"]] == [2]
    same, runs = serve.pooled_rounds(piece)
    assert sorted(r["ratio"] for r in same) == [1.0, 2.0, 3.0, 4.0, 5.0]  # both runs: the same code
    assert [r["latest"] for r in runs] == [False, True]
    serve.save_piece("embforge-onnx-int8", _rounds(9.0))  # new code: only its own rounds count
    piece = json.loads((tmp_path / "rows.json").read_text())["embforge-onnx-int8"]
    same, runs = serve.pooled_rounds(piece)
    assert [r["ratio"] for r in same] == [9.0] and len(runs) == 3
    lines = serve.runs_lines("embforge-onnx-int8", runs, piece["src"])
    assert "other code (aaa)" in lines[0] and "this code, latest" in lines[2] and "median 9.00" in lines[2]


def test_uncommitted_code_pools_nothing_but_its_own_run():
    piece = {
        "src": "aaa+dirty",
        "rows": _rounds(2.0),
        "history": [{"when": "t", "src": "aaa+dirty", "rounds": _rounds(1.0)}],
    }
    same, _ = serve.pooled_rounds(piece)
    assert [r["ratio"] for r in same] == [2.0]
    assert float(np.median([r["ratio"] for r in serve.pooled_rounds({"rows": _rounds(1.0, 3.0)})[0]])) == 2.0
