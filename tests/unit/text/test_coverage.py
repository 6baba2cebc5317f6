"""chars_per_token: how well a tokenizer covers a text (the coverage split of tune-fusion)."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from embforge.model.builders import bundled_model_path
from embforge.text.coverage import LOW_COVERAGE_CHARS_PER_TOKEN, chars_per_token


@pytest.fixture(scope="module")
def fast():
    return AutoTokenizer.from_pretrained(bundled_model_path())


TEXTS = [
    "where is the railway station",  # English words: whole-word pieces
    "Wo ist der Hauptbahnhof?",  # German: a few pieces per word
    "\u0645\u062d\u0637\u0629 \u0627\u0644\u0642\u0637\u0627\u0631",  # Arabic: one character per token
    "\u706b\u8eca\u7ad9\u5728\u54ea\u88e1",  # Chinese: one character per token, or <unk>
    "\U0001f682\U0001f689",  # emoji: <unk> for this vocabulary, which spells nothing
    "",
]


def test_scripts_the_vocabulary_knows_sit_above_the_threshold_the_others_below(fast):
    cpt = chars_per_token(TEXTS, fast)
    assert cpt[0] > 4 and cpt[1] > LOW_COVERAGE_CHARS_PER_TOKEN
    assert cpt[2] == pytest.approx(1.0)  # every Arabic letter its own token
    assert 0 < cpt[3] <= 1.0  # Chinese: single characters, some of them <unk>
    assert cpt[4] == 0.0 and cpt[5] == 0.0  # <unk> spells no characters; no tokens -> 0
    assert chars_per_token([], fast).shape == (0,)


class _Slow:
    """A tokenizer without offsets (a slow one): token strings only, as sentencepiece-style slow
    tokenizers give (transformers 5 loads this model's fast tokenizer even with use_fast=False)."""

    is_fast = False

    def __init__(self, fast):
        self.fast, self.unk_token_id = fast, fast.unk_token_id

    def __call__(self, text, add_special_tokens=False):
        return self.fast(text, add_special_tokens=add_special_tokens)

    def convert_ids_to_tokens(self, ids):
        return self.fast.convert_ids_to_tokens(ids)


def test_a_tokenizer_without_offsets_measures_the_same_from_its_token_strings(fast):
    np.testing.assert_allclose(chars_per_token(TEXTS, _Slow(fast)), chars_per_token(TEXTS, fast))
