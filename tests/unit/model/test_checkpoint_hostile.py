"""Hostile checkpoint folders: module paths in a sentence-transformers ``modules.json`` must stay
inside the model folder, and malformed JSON files are a CheckpointError (not a crash)."""

from __future__ import annotations

import json

import pytest

from embforge.errors import CheckpointError
from embforge.model.encoder import Encoder


def _st_folder(tmp_path, modules) -> str:
    d = tmp_path / "model"
    d.mkdir()
    (d / "modules.json").write_text(json.dumps(modules))
    return str(d)


@pytest.mark.parametrize(
    "modules",
    [
        [{"type": "sentence_transformers.models.Transformer", "path": "../../outside"}],
        [{"type": "sentence_transformers.models.Transformer", "path": "/etc"}],
        [
            {"type": "sentence_transformers.models.Transformer", "path": ""},
            {"type": "sentence_transformers.models.Pooling", "path": "../pool"},
        ],
    ],
    ids=["dotdot", "absolute", "pooling-dotdot"],
)
def test_hostile_st_module_paths_stay_inside_the_model_folder(tmp_path, modules) -> None:
    with pytest.raises(CheckpointError, match=r"outside the model folder"):
        Encoder.from_pretrained(_st_folder(tmp_path, modules))


def test_hostile_st_module_path_symlink_out(tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    d = _st_folder(tmp_path, [{"type": "sentence_transformers.models.Transformer", "path": "tr"}])
    (tmp_path / "model" / "tr").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=r"outside the model folder"):
        Encoder.from_pretrained(d)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"[" * 100000, b"{}", b'"x"', b"[1, 2]"])
def test_malformed_modules_json_is_a_checkpoint_error(tmp_path, raw) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "modules.json").write_bytes(raw)
    with pytest.raises(CheckpointError):
        Encoder.from_pretrained(str(d))
