"""bench/serve_inline.py's paired difference (the numbers behind docs/serving.md's inline claim)."""

from __future__ import annotations

import math

import pytest

from helpers.paths import load_script

serve_inline = load_script("bench/serve_inline.py", "serve_inline")


def test_paired_difference_and_its_standard_error():
    diff, se = serve_inline.paired([2.0, 3.0, 2.5], [1.8, 2.7, 2.4])
    assert diff == pytest.approx(-0.2)  # (-0.2, -0.3, -0.1) / 3
    assert se == pytest.approx(0.1 / math.sqrt(3))  # sample std 0.1 over sqrt(3)
    one, nan = serve_inline.paired([1.0], [2.0])
    assert one == 1.0 and math.isnan(nan)


def test_the_variants_are_off_and_the_servers_default():
    from embforge.serve import ServeConfig

    assert sorted(float(v) for v in serve_inline.VARIANTS.values()) == [0.0, ServeConfig().max_inline_ms]
