"""`embforge train` reads and checks every data file before it loads the model (issue 14, "every
corrupt input ... before heavy work starts"): a bad line at the END of a file fails in seconds with
file:line and exit code 2, in every recipe, and the model loader is never called."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from embforge.cli.app import main

ROOT = Path(__file__).resolve().parents[3]
GOOD = {"query": "what is a cat", "positive": "a small animal", "negative": "a large rock"}


class ModelLoaded(Exception):
    """Raised by the patched loaders: the recipe got to the model before checking its data."""


def _loader(*a, **k):
    raise ModelLoaded("the model was loaded before the data was checked")


def _bad_file(tmp_path: Path, n: int = 200) -> tuple[Path, int]:
    """``n`` good records, then one broken line at the end."""
    p = tmp_path / "train.jsonl"
    p.write_text(
        "".join(json.dumps(GOOD) + "\n" for _ in range(n)) + '{"query": "cut off\n', encoding="utf-8"
    )
    return p, n + 1


def _nv_config(tmp_path: Path, bad: Path) -> Path:
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(json.dumps({**GOOD, "query": f"q{i}"}) + "\n" for i in range(20)), encoding="utf-8"
    )
    stage = {"in_batch_negatives": True, "steps": 1, "batch_size": 2, "negatives": 1}
    cfg = {
        "recipe": "nv-embed",
        "loop": {"output_dir": str(tmp_path / "run")},
        "stages": [  # the bad file is stage 2's: it must fail before stage 1 trains
            {"name": "one", **stage, "sources": [{"name": "a", "format": "records", "path": str(good)}]},
            {"name": "two", **stage, "sources": [{"name": "b", "format": "records", "path": str(bad)}]},
        ],
    }
    path = tmp_path / "nv.yaml"
    path.write_text(json.dumps(cfg), encoding="utf-8")  # JSON is YAML
    return path


@pytest.mark.parametrize("recipe", ["contrastive", "mlm", "retromae", "nv-embed"])
def test_malformed_train_data_fails_before_the_model_loads(tmp_path, monkeypatch, capsys, recipe) -> None:
    import embforge.train.masked_lm as masked_lm
    import embforge.train.recipes.contrastive as contrastive
    import embforge.train.recipes.nv_embed as nv_embed

    monkeypatch.setattr(contrastive, "_load_encoder", _loader)
    monkeypatch.setattr(masked_lm, "load_masked_lm", _loader)
    monkeypatch.setattr(nv_embed, "build_model", _loader)
    bad, line = _bad_file(tmp_path)
    out = f"loop.output_dir={tmp_path / 'run'}"
    args = {
        "contrastive": [ROOT / "configs" / "m3-finetune.yaml", f"data.train_files=[{bad}]", out],
        "mlm": [ROOT / "configs" / "mlm.yaml", f"data.train_files=[{bad}]", out],
        "retromae": [ROOT / "configs" / "retromae.yaml", f"data.train_files=[{bad}]", out],
        "nv-embed": [_nv_config(tmp_path, bad)],
    }[recipe]
    monkeypatch.setattr(sys, "argv", ["embforge", "train", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert f"{bad}:{line}" in err, err
    assert "ModelLoaded" not in err
