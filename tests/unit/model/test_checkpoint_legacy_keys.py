"""Old embforge checkpoints (state-dict keys ``dense_head.* / sparse_head.* / multivector_head.*``)
keep loading now that the heads live in ``Encoder.head_modules``."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from embforge.model.encoder import LEGACY_HEAD_PREFIXES, Encoder

TEXTS = ["재판부는 검찰의 공소사실을", "Where does the dog run run run?", "北京 天气"]
HEADS3 = ("dense", "sparse", "multivector")


def _to_legacy(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        for old, new in LEGACY_HEAD_PREFIXES.items():
            if k.startswith(new):
                k = old + k[len(new) :]
                break
        out[k] = v
    return out


@pytest.fixture
def legacy_dir(tiny_m3, tmp_path):
    tiny_m3.save_pretrained(str(tmp_path), format="embforge")
    sd = load_file(str(tmp_path / "model.safetensors"))
    assert any(k.startswith("head_modules.sparse.") for k in sd)
    legacy = _to_legacy(sd)
    assert any(k.startswith("sparse_head.linear.") for k in legacy)
    assert any(k.startswith("multivector_head.linear.") for k in legacy)
    save_file(legacy, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    return tmp_path


def test_old_key_names_load_with_every_head(tiny_m3, legacy_dir, caplog):
    back = Encoder.from_pretrained(str(legacy_dir))
    assert back.heads == HEADS3 and "initialised" not in caplog.text
    a, b = tiny_m3.encode(TEXTS, heads=HEADS3), back.encode(TEXTS, heads=HEADS3)
    np.testing.assert_array_equal(b.dense, a.dense)
    np.testing.assert_array_equal(b.sparse.values, a.sparse.values)
    for x, y in zip(a.multivector, b.multivector):
        np.testing.assert_array_equal(y, x)


def test_old_key_names_load_dense_only(tiny_m3, legacy_dir):
    back = Encoder.from_pretrained(str(legacy_dir), heads=("dense",))
    assert back.heads == ("dense",) and back.sparse_head is None
    np.testing.assert_array_equal(back.encode(TEXTS).dense, tiny_m3.encode(TEXTS).dense)


def test_load_state_dict_accepts_old_names(tiny_m3, legacy_dir):
    """Training states saved with ``enc.state_dict()`` before the rename also load."""
    fresh = Encoder.from_pretrained(str(legacy_dir))
    legacy = _to_legacy({k: v.clone() for k, v in tiny_m3.state_dict().items()})
    res = fresh.load_state_dict(legacy, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
