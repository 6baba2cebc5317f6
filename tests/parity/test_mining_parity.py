"""embforge mine == sentence-transformers mine_hard_negatives (same model, same settings).

ST's ``relative_margin=r`` drops candidates scoring above ``s_pos - |s_pos| * r``; that is
TopK-PercPos with ``p = 1 - r``. With "top" sampling both must pick the same negatives.
"""

from __future__ import annotations

import os

import pytest

from embforge.data.convert.squad import read_squad, squad_pairs
from embforge.data.io import write_jsonl
from embforge.data.mining import MiningConfig, mine_file
from embforge.data.teachers import EncoderTeacher
from helpers.paths import SHARED_DATA
from helpers.requires import require_module

DATA = SHARED_DATA
pytestmark = pytest.mark.parity


def test_same_negatives_as_sentence_transformers(tmp_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    require_module("datasets", "pip install -e '.[dev]' (datasets comes with sentence-transformers)")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from embforge.model.checkpoint import default_model_path
    from embforge.model.encoder import Encoder

    paras = read_squad(DATA / "xquad/xquad.en.json")[:14]
    pairs = list({(p.query, p.positive): p for p in squad_pairs(paras)}.values())  # xquad repeats a few
    n_neg, top_k, p = 3, 10, 0.9

    st_model = SentenceTransformer(str(default_model_path()), device="cpu")
    st_model.max_seq_length = 128
    ds = mine_hard_negatives(
        Dataset.from_dict({"anchor": [x.query for x in pairs], "positive": [x.positive for x in pairs]}),
        st_model,
        num_negatives=n_neg,
        range_max=top_k,
        relative_margin=1 - p,
        sampling_strategy="top",
        output_format="n-tuple",
        verbose=False,
    )
    st = {(r["anchor"], r["positive"]): [r[f"negative_{i}"] for i in range(1, n_neg + 1)] for r in ds}

    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    teacher = EncoderTeacher(Encoder.from_pretrained(None, heads=("dense",)), max_length=128)
    stats = mine_file(
        tmp_path / "pairs.jsonl",
        tmp_path / "out.jsonl",
        teacher,
        MiningConfig(top_k=top_k, n_negatives=n_neg, perc_pos=p),
    )
    from embforge.data.io import read_records

    ours = {(e.query, e.pos[0]): e.neg for e in read_records(tmp_path / "out.jsonl") if len(e.neg) == n_neg}
    assert stats.dropped_false_negative > 0  # the filter is exercised
    assert len(st) > 0.8 * len(pairs)
    assert ours == st
