"""``encode`` runs in eval mode (no dropout) whatever mode the encoder is in, puts the mode back
after the call, and does not walk the module tree to switch modes when nothing is training."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["the dog runs in the park", "북한 핵", "a"]


def test_encode_in_train_mode_matches_eval_and_restores_it(tiny_m3):
    tiny_m3.eval()
    ref = tiny_m3.encode(TEXTS).dense
    try:
        tiny_m3.train()
        np.testing.assert_allclose(tiny_m3.encode(TEXTS).dense, ref, atol=1e-6)  # dropout was off
        assert all(m.training for m in tiny_m3.modules())
        tiny_m3.eval()
        tiny_m3.backbone.train()  # one submodule left training: the call still runs without dropout
        np.testing.assert_allclose(tiny_m3.encode(TEXTS).dense, ref, atol=1e-6)
    finally:
        tiny_m3.eval()


def test_encode_in_eval_mode_never_switches_modes(tiny_m3, monkeypatch):
    tiny_m3.eval()

    def no_switch(mode: bool = True):
        raise AssertionError(f"train({mode}) called on an encoder already in eval mode")

    monkeypatch.setattr(tiny_m3, "train", no_switch)
    out = tiny_m3.encode(TEXTS)
    assert out.dense.shape[0] == len(TEXTS)


@pytest.mark.parametrize("show_progress", [True, False])
def test_progress_bar_or_none_gives_the_same_rows(tiny_m3, show_progress, capsys):
    tiny_m3.eval()
    ref = tiny_m3.encode(TEXTS, show_progress=False).dense
    out = tiny_m3.encode(TEXTS, show_progress=show_progress).dense
    np.testing.assert_array_equal(out, ref)
    assert ("encode" in capsys.readouterr().err) == show_progress
