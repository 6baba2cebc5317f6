"""Train a sentencepiece-style unigram tokenizer for new languages (XLM-R layout).

Uses the ``tokenizers`` library's ``UnigramTrainer`` (the model XLM-R's
sentencepiece uses) with NFKC normalisation and ``▁`` word boundaries, and
wraps the result as an ``XLMRobertaTokenizerFast`` with XLM-R's special tokens
at XLM-R's ids: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, plus ``<mask>`` 4.
The saved directory loads with ``AutoTokenizer.from_pretrained`` (and so with
FlagEmbedding and sentence-transformers).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

# transformers 5 keeps this name only as a runtime alias (of XLMRobertaTokenizer); 4.x has the class
from transformers import XLMRobertaTokenizerFast  # type: ignore[attr-defined]  # see above

from embforge.errors import ConfigError

__all__ = ["SPECIAL_TOKENS", "train_tokenizer"]

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 8000,
    max_piece_length: int = 16,
    model_max_length: int = 512,
    output_dir: str | Path | None = None,
):
    """Train a unigram tokenizer on ``texts`` and return it as ``XLMRobertaTokenizerFast``.

    Args:
        texts: raw texts (any language; no pre-tokenisation needed).
        vocab_size: target vocabulary size including the 5 special tokens.
            A few thousand covers the Korean syllables of ~7k KLUE sentences;
            real multilingual models use 250k.
        max_piece_length: longest piece in characters.
        model_max_length: the tokenizer's default truncation length (tokens).
        output_dir: if given, save the tokenizer there.

    Returns:
        A ``transformers`` XLM-R fast tokenizer.

    Example:
        >>> tok = train_tokenizer(["hello world", "hello there"] * 20, vocab_size=30)
        >>> tok.convert_ids_to_tokens([0, 1, 2, 3, 4])
        ['<s>', '<pad>', '</s>', '<unk>', '<mask>']
    """
    if int(vocab_size) <= len(SPECIAL_TOKENS):
        raise ConfigError(
            f"vocab_size={vocab_size} is too small; use more than {len(SPECIAL_TOKENS)} (e.g. 8000)"
        )
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=int(vocab_size),
        special_tokens=list(SPECIAL_TOKENS),
        unk_token="<unk>",
        max_piece_length=int(max_piece_length),
        show_progress=False,
    )
    texts = _non_empty(texts)
    try:
        tok.train_from_iterator(texts, trainer)
    except Exception as e:  # the Rust trainer raises a plain Exception
        if "not large enough" in str(e):
            raise ConfigError(
                f"vocab_size={vocab_size} cannot hold every distinct character of the texts ({e}); "
                "raise vocab_size (Korean or Chinese text needs a few thousand)"
            ) from None
        raise
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=int(model_max_length))
    if output_dir is not None:
        fast.save_pretrained(str(output_dir))
    return fast


def _non_empty(texts: Iterable[str]) -> Iterable[str]:
    """The non-empty texts; raises ConfigError up front when there are none."""
    it = (t for t in texts if t and t.strip())
    first = next(it, None)
    if first is None:
        raise ConfigError("no non-empty texts to train the tokenizer on; check the input files")
    return itertools.chain([first], it)
