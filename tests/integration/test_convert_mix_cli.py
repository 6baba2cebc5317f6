"""`embforge convert mix` end to end with a real (tiny) embforge model on a slice of shared/data."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embforge.cli.app import app
from embforge.data import read_records
from helpers.paths import SHARED_DATA
from helpers.tiny_m3 import tiny_m3_checkpoint

DATA = SHARED_DATA
pytestmark = pytest.mark.integration


def test_convert_mix_cli(tmp_path):
    root = tmp_path / "shared"
    doc = json.loads((DATA / "xquad/xquad.es.json").read_text(encoding="utf-8"))
    doc["data"] = doc["data"][:4]
    (root / "xquad").mkdir(parents=True)
    (root / "xquad/xquad.es.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (root / "nli").symlink_to(DATA / "nli")
    (root / "sts").symlink_to(DATA / "sts")
    (root / "tatoeba").symlink_to(DATA / "tatoeba")
    out = tmp_path / "mix"
    args = ["convert", "mix", root, "--output", out, "--model", tiny_m3_checkpoint(), "--per-group", "2",
            "--max-corpus", "8", "--max-length", "32"]  # fmt: skip
    r = CliRunner().invoke(app, list(map(str, args)))
    assert r.exit_code == 0, r.output
    assert "xquad-es:" in r.output and "held-apart sets in" in r.output
    manifest = json.loads((out / "manifest.json").read_text())
    recs = list(read_records(out / "train.jsonl", kind="example"))
    assert len(recs) == manifest["train"] > 0
    assert len(manifest["groups"]) == 1 + 2 + 6 + 12  # xquad-es, 2 NLI, 6 STS, 12 Tatoeba
    assert (out / "eval/xquad-es/qrels/test.tsv").exists()
    assert (out / "eval/tatoeba/tatoeba.tur-eng.tur").exists()
