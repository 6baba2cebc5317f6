"""EMBFORGE_DEFAULT_MODEL replaces the bundled model where commands default to it."""

from __future__ import annotations

import pytest

from embforge.errors import ConfigError
from embforge.model.checkpoint import (
    DEFAULT_MODEL_ENV,
    bundled_model_path,
    default_model_path,
    resolve_path,
)


def test_unset_is_the_bundled_model(monkeypatch):
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    assert default_model_path() == bundled_model_path()
    assert resolve_path(None) == resolve_path("bundled")
    assert str(resolve_path(None)) == bundled_model_path()


def test_set_replaces_none_and_bundled(monkeypatch, tmp_path):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(tmp_path))
    assert resolve_path(None) == resolve_path("bundled") == tmp_path
    assert bundled_model_path() != str(tmp_path)  # the package's model is still reachable


def test_a_missing_folder_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(tmp_path / "nope"))
    with pytest.raises(
        ConfigError, match=r"EMBFORGE_DEFAULT_MODEL=.*nope.* is not a model folder; .*unset it"
    ):
        resolve_path(None)
