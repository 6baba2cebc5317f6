"""Tokenizer training (unigram, XLM-R layout) and raw-text readers on the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from embforge.errors import ConfigError, DataError
from embforge.pretrain.corpus import read_texts
from embforge.pretrain.tokenizer import train_tokenizer
from helpers.paths import SHARED_DATA
from helpers.requires import strict

XQUAD = str(SHARED_DATA / "xquad")


def test_klue_reader_strips_ner_tags_and_skips_readme(ko_texts):
    texts = ko_texts
    assert len(texts) == 7000  # 2000 DP + 5000 NER sentences
    assert texts[0] == "'K팝스타3’ 유희열이 홍정희의 탈락에 눈물을 흘렸다."
    assert texts[2000].startswith("경찰은 또 성매매 알선 자금을 관리한 박씨의 딸(32)과")
    assert not any("<" in t and ":PS>" in t for t in texts)


@pytest.mark.skipif(not Path(XQUAD).exists() and not strict(), reason="shared data not on this machine")
def test_squad_contexts_and_questions():
    assert len(read_texts(f"{XQUAD}/xquad.de.json")) == 240
    assert len(read_texts(f"{XQUAD}/xquad.de.json", questions=True)) == 1190
    assert len(read_texts(f"{XQUAD}/xquad.de.json", limit=7)) == 7


def test_reader_errors_name_file_line_and_fix(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"title": "x"}) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl:2: no text field; each line needs one of text"):
        read_texts(bad)
    (tmp_path / "d.jsonl").write_text("{oops\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: invalid JSON"):
        read_texts(tmp_path / "d.jsonl")
    with pytest.raises(DataError, match="no such file or directory"):
        read_texts(tmp_path / "missing.txt")
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="no texts read"):
        read_texts(tmp_path / "e.txt")


def test_unigram_tokenizer_covers_korean_and_round_trips(tmp_path, ko_texts, ko_tokenizer):
    texts, tok = ko_texts[:3000], ko_tokenizer
    tok.save_pretrained(tmp_path / "tok")
    assert len(tok) == 3000
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert (tok.cls_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    ids = tok(texts[:200])["input_ids"]
    assert all(i[0] == 0 and i[-1] == 2 for i in ids)
    assert sum(x == tok.unk_token_id for i in ids for x in i) == 0  # every training character is covered
    assert tok.decode(ids[5], skip_special_tokens=True) == texts[5]
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded(texts[7])["input_ids"] == tok(texts[7])["input_ids"]
    assert loaded.mask_token_id == 4


def test_tokenizer_errors():
    with pytest.raises(ConfigError, match="vocab_size=3 is too small"):
        train_tokenizer(["a b"], vocab_size=3)
    with pytest.raises(
        ConfigError, match="vocab_size=20 cannot hold every distinct character.*raise vocab_size"
    ):
        train_tokenizer(["가나다라마바사아자차카타파하 거너더러머버서어저처커터퍼허"], vocab_size=20)
    with pytest.raises(ConfigError, match="no non-empty texts"):
        train_tokenizer(["", "  "], vocab_size=100)
