"""Shared fixtures of the pretraining tests: the KLUE Korean sentences and a tokenizer trained on them."""

from __future__ import annotations

import pytest

from helpers.paths import SHARED_DATA
from helpers.requires import missing

KLUE = SHARED_DATA / "raw/klue_ko_sentences"


@pytest.fixture(scope="session")
def ko_texts():
    if not KLUE.exists():
        missing(f"{KLUE} (shared data) is not on this machine")
    from embforge.pretrain.corpus import read_texts

    return read_texts(KLUE)


@pytest.fixture(scope="session")
def ko_tokenizer(ko_texts):
    from embforge.pretrain.tokenizer import train_tokenizer

    return train_tokenizer(ko_texts[:3000], vocab_size=3000)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
