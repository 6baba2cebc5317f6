"""Parity and reference checks never skip silently: under CI=true a missing reference fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.requires import require_module, require_path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def test_missing_reference_is_a_skip_locally_and_a_failure_under_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("EMBFORGE_REFERENCE_ENV", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_module_14b"):
        require_module("no_such_module_14b", "pip install it")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="a skip is a failure under CI=true"):
        require_module("no_such_module_14b", "pip install it")
    with pytest.raises(pytest.fail.Exception):
        require_path(ROOT / "no-such-folder", "test data")


def test_no_test_uses_a_bare_skip() -> None:
    """Every optional dependency goes through helpers.requires (importorskip/skip hide missing checks)."""
    bare = re.compile(r"pytest\.importorskip\(|pytest\.skip\(")
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in TESTS.rglob("*.py")
        if p.name != "requires.py" and p != Path(__file__).resolve()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line) or ("skipif(" in line and "strict()" not in line)
    ]
    assert not offenders, f"use helpers.requires instead of a bare skip: {offenders}"


def test_live_flagembedding_tests_run_in_the_reference_env_only() -> None:
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert '-m "not slow and not reference_env"' in make
    assert "EMBFORGE_REFERENCE_ENV=1" in make and "-m reference_env" in make
    parity = (TESTS / "parity" / "test_m3_parity.py").read_text(encoding="utf-8")
    live = re.findall(r"@reference_env\ndef (test_\w+)", parity)
    assert sorted(live) == ["test_all_scores_match_flagembedding", "test_every_head_matches_flagembedding"]
    assert (TESTS / "parity" / "reference" / "flagembedding-bge-m3.json").is_file()
