"""The tiny test models' fixed tokenizer file still matches what the builder trains."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from embforge.model.builders import train_unigram_tokenizer
from helpers.paths import SHARED_DATA
from helpers.tiny_m3 import TINY_TOKENIZER, tiny_m3_checkpoint


def _pieces(folder) -> set[str]:
    model = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    return {piece for piece, _score in model["vocab"]}


def test_the_file_has_the_pieces_the_builder_trains(tmp_path):
    """Same 4,000 pieces as a fresh ``train_unigram_tokenizer`` on the shared data (only the
    trainer's piece scores vary between processes: tests/data/tiny-unigram-tokenizer/README.md)."""
    fresh = tmp_path / "fresh"
    train_unigram_tokenizer(fresh, vocab_size=4000, data_dir=SHARED_DATA)
    shipped = _pieces(TINY_TOKENIZER)
    assert len(shipped) == 4000
    assert shipped == _pieces(fresh)


def test_the_tiny_model_uses_the_file(tiny_m3_path):
    assert tiny_m3_path == tiny_m3_checkpoint()
    ours = AutoTokenizer.from_pretrained(str(tiny_m3_path))
    ref = AutoTokenizer.from_pretrained(str(TINY_TOKENIZER))
    text = "서울의 날씨는 맑습니다. Der Fluss fließt, 河流 течёт."
    assert ours(text)["input_ids"] == ref(text)["input_ids"]
    assert ours.pad_token_id == 1 and ours.cls_token_id == 0 and len(ours) == 4000
