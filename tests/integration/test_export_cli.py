"""`embforge export` and `--backend` end to end: export a tiny BGE-M3, encode and index with the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from embforge.cli.app import app, main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tiny_m3_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "m3-onnx"
    r = CliRunner().invoke(app, ["export", "-m", str(tiny_m3_path), "-o", str(out), "--format", "onnx"])
    assert r.exit_code == 0, r.output
    assert "outputs last_hidden_state, dense, sparse, multivector, multivector_mask" in r.output
    return out


def test_encode_with_the_export_matches_torch(exported, tiny_m3_path, tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text("the dog runs\nEin Hund läuft im Park\n", encoding="utf-8")
    outs = {}
    for backend, model in (("auto", exported), ("onnx", exported), ("torch", tiny_m3_path)):
        out = tmp_path / f"{backend}.jsonl"
        r = CliRunner().invoke(
            app, ["encode", str(src), "-o", str(out), "-m", str(model), "--backend", backend]
        )
        assert r.exit_code == 0, r.output
        outs[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    for a, b in zip(outs["auto"], outs["torch"]):
        assert set(a) == {"id", "dense", "sparse", "multivector"}  # --heads auto reads the export's heads
        assert np.abs(np.array(a["dense"]) - np.array(b["dense"])).max() <= 1e-4
        assert a["sparse"].keys() == b["sparse"].keys()
    assert outs["auto"] == outs["onnx"]


def test_index_with_the_export(exported, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "the dog runs"}\n{"_id": "b", "text": "a cat sleeps"}\n')
    r = CliRunner().invoke(app, ["index", str(corpus), "-o", str(tmp_path / "idx"), "-m", str(exported)])
    assert r.exit_code == 0, r.output


def test_user_errors_exit_2(exported, tiny_m3_path, tmp_path, monkeypatch, capsys):
    src = tmp_path / "docs.txt"
    src.write_text("hello\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    int8 = ["export", "-m", str(tiny_m3_path), "-o", str(tmp_path / "x"), "--quantize", "int8"]
    cases = [
        (["export", "-m", str(tiny_m3_path), "-o", str(tmp_path / "x"), "--quantize", "bf16"], "bfloat16"),
        (
            ["export", "-m", str(tiny_m3_path), "-o", str(tmp_path / "x"), "--format", "tflite"],
            "choose from: onnx",
        ),
        (["export", "-m", str(tiny_m3_path), "-o", str(exported)], "exists"),
        ([*int8, "--smooth-alpha", "1"], "--smooth-alpha 1.0: choose a value in [0, 1)"),
        ([*int8, "--calibration", str(tmp_path / "empty.txt")], "no non-empty lines"),
        (
            ["encode", str(src), "-o", str(tmp_path / "e.npy"), "-m", str(tiny_m3_path), "--backend", "onnx"],
            "embforge export",
        ),
        (
            ["encode", str(src), "-o", str(tmp_path / "e.npy"), "-m", str(exported), "--dtype", "bf16"],
            "dtype='fp32'",
        ),
    ]
    for argv, msg in cases:
        monkeypatch.setattr("sys.argv", ["embforge", *argv])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == 2, argv
        assert msg in capsys.readouterr().err, argv


def test_int8_export_with_calibration_file_and_without_smoothing(tiny_m3_path, tmp_path):
    import onnx

    calib = tmp_path / "calib.txt"
    calib.write_text("the dog runs\nEin Hund läuft im Park\n", encoding="utf-8")
    smooth_muls = {}
    for name, extra in (("own", ["--calibration", str(calib)]), ("off", ["--smooth-alpha", "0"])):
        out = tmp_path / name
        r = CliRunner().invoke(
            app, ["export", "-m", str(tiny_m3_path), "-o", str(out), "--quantize", "int8", *extra]
        )
        assert r.exit_code == 0, r.output
        graph = onnx.load(str(out / "onnx" / "model.onnx"))
        smooth_muls[name] = sum(n.name.endswith("/smooth") for n in graph.graph.node)
    assert smooth_muls["own"] > 0 and smooth_muls["off"] == 0
