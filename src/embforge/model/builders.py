"""Tiny random models for tests and smoke runs (offline, fixed seeds, seconds to build).

- ``shared_data_dir(path)``: the shared data folder (KLUE, XQuAD, ...), from the argument or
  ``$EMBFORGE_SHARED_DATA``; ``require_shared_data`` raises a clear error when neither is set.

- ``tiny_bert(...)``: a random ``BertModel`` + the bundled all-MiniLM-L6-v2 tokenizer.
- ``train_unigram_tokenizer(...)``: a unigram tokenizer trained with ``tokenizers`` on real
  multilingual text (vocab 4,000 covers the Korean of KLUE), wrapped as ``XLMRobertaTokenizerFast``.
- ``tiny_xlmr(...)``: a random small ``XLMRobertaModel`` with that tokenizer.
- ``build_tiny_m3_checkpoint(dir)``: a tiny XLM-R saved in the BGE-M3 layout (HF weights +
  ``sparse_linear.pt`` + ``colbert_linear.pt``) that FlagEmbedding's ``BGEM3FlagModel`` also loads.

- ``XLMR_SIZES`` / ``xlmr_config`` / ``build_masked_lm``: named XLM-R sizes (tiny .. large) built
  from scratch for a freshly trained tokenizer (RetroMAE / MLM pretraining).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from embforge.errors import ConfigError
from embforge.model.checkpoint import bundled_model_path

__all__ = [
    "DATA_ENV",
    "shared_data_dir",
    "require_shared_data",
    "tokenizer_corpus",
    "train_unigram_tokenizer",
    "tiny_bert",
    "tiny_xlmr",
    "build_tiny_m3_checkpoint",
    "cached_tiny_m3_checkpoint",
    "XLMRSize",
    "XLMR_SIZES",
    "xlmr_config",
    "build_masked_lm",
]


#: Environment variable naming the shared data folder (``xquad/``, ``raw/klue_ko_sentences/``, ...).
DATA_ENV = "EMBFORGE_SHARED_DATA"
_LEGACY_DATA_ENV = "EMBFORGE_DATA"  # older spelling, still read when DATA_ENV is unset
_DEMO_CORPUS = Path(__file__).resolve().parents[1] / "resources" / "demo" / "xquad-en" / "corpus.jsonl"


def shared_data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The shared data folder: ``path``, else ``$EMBFORGE_SHARED_DATA``, else None (not configured).

    Raises:
        ConfigError: the folder given (argument or environment) does not exist.
    """
    where = "the data_dir argument"
    if path is None:
        env = os.environ.get(DATA_ENV) or os.environ.get(_LEGACY_DATA_ENV)
        if not env:
            return None
        path, where = env, f"${DATA_ENV}"
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(
            f"shared data folder {str(p)!r} (from {where}) is not a directory; set {DATA_ENV} to the folder "
            "that holds xquad/ and raw/klue_ko_sentences/, or unset it"
        )
    return p


def require_shared_data(path: str | os.PathLike | None = None) -> Path:
    """``shared_data_dir(path)``, raising a ConfigError that says what to set when it is not configured."""
    p = shared_data_dir(path)
    if p is None:
        raise ConfigError(
            f"no shared data folder: pass data_dir=... or set {DATA_ENV} to the folder that holds xquad/ "
            "and raw/klue_ko_sentences/ (the test suite's conftest sets it)"
        )
    return p


def _klue_sentences(data: Path, limit: int) -> Iterator[str]:
    """KLUE Korean sentences of ``data/raw/klue_ko_sentences/*.tsv``; once ``limit`` are out, each
    further file gives its first one."""
    n = 0
    for f in sorted((data / "raw" / "klue_ko_sentences").glob("*.tsv")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.startswith("## klue-") and "\t" in line:
                yield line.split("\t", 1)[1]
                n += 1
                if n >= limit:
                    break


def _xquad_contexts(data: Path) -> Iterator[str]:
    """The paragraph contexts of the first 8 articles of XQuAD en/de/zh/ru under ``data/xquad``."""
    for lang in ("en", "de", "zh", "ru"):
        f = data / "xquad" / f"xquad.{lang}.json"
        if f.is_file():
            for art in json.loads(f.read_text(encoding="utf-8"))["data"][:8]:
                for p in art["paragraphs"]:
                    yield p["context"]


def tokenizer_corpus(max_lines: int = 3000, data_dir: str | os.PathLike | None = None) -> Iterator[str]:
    """Real multilingual text: KLUE Korean sentences and XQuAD contexts from the shared data folder
    (``shared_data_dir(data_dir)``), or the bundled English demo corpus when none is configured."""
    n = 0
    data = shared_data_dir(data_dir)
    if data is not None:
        for text in itertools.chain(_klue_sentences(data, max_lines * 2 // 3), _xquad_contexts(data)):
            yield text
            n += 1
    if n == 0:
        for line in _DEMO_CORPUS.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)["text"]


def train_unigram_tokenizer(
    out_dir: str | Path,
    vocab_size: int = 4000,
    texts: list[str] | None = None,
    data_dir: str | os.PathLike | None = None,
):
    """Train a unigram (sentencepiece-style) tokenizer and save it as ``XLMRobertaTokenizerFast``.

    ``texts`` default: ``tokenizer_corpus(data_dir=data_dir)``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    # transformers 5 keeps this name only as a runtime alias (of XLMRobertaTokenizer); 4.x has the class
    from transformers import XLMRobertaTokenizerFast  # type: ignore[attr-defined]  # see above

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4 as in XLM-R (cls, pad, eos, unk)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    corpus = texts if texts is not None else tokenizer_corpus(data_dir=data_dir)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=512)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return fast


def tiny_bert(hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0, max_positions: int = 512):
    """(random BertModel, all-MiniLM-L6-v2 tokenizer) with fixed seed."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    return BertModel(cfg).eval(), tok


def tiny_xlmr(
    tokenizer, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0, max_positions: int = 514
):
    """A random ``XLMRobertaModel`` sized for ``tokenizer`` (fixed seed)."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    cfg = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.eos_token_id,
        type_vocab_size=1,
    )
    torch.manual_seed(seed)
    return XLMRobertaModel(cfg, add_pooling_layer=False).eval()


def build_tiny_m3_checkpoint(
    out_dir: str | Path,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    vocab_size: int = 4000,
    tokenizer_dir: str | Path | None = None,
    with_heads: bool = True,
    data_dir: str | os.PathLike | None = None,
) -> Path:
    """Write a tiny random XLM-R in the BGE-M3 layout to ``out_dir`` and return the path.

    ``tokenizer_dir`` reuses an already-trained tokenizer (training takes a few seconds).
    ``with_heads=False`` omits ``sparse_linear.pt``/``colbert_linear.pt``. ``data_dir``: the shared
    data folder the tokenizer is trained on (default ``$EMBFORGE_SHARED_DATA``; see ``tokenizer_corpus``).
    """
    from transformers import AutoTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        tok.save_pretrained(str(out))
    else:
        tok = train_unigram_tokenizer(out, vocab_size=vocab_size, data_dir=data_dir)
    model = tiny_xlmr(tok, hidden, layers, heads, seed)
    model.save_pretrained(str(out))
    if with_heads:
        g = torch.Generator().manual_seed(seed + 1)
        sparse = {"weight": torch.randn(1, hidden, generator=g) * 0.3, "bias": torch.full((1,), 0.05)}
        colbert = {
            "weight": torch.randn(hidden, hidden, generator=g) * 0.2,
            "bias": torch.randn(hidden, generator=g) * 0.02,
        }
        torch.save(sparse, out / "sparse_linear.pt")
        torch.save(colbert, out / "colbert_linear.pt")
    return out


def cached_tiny_m3_checkpoint(cache_root: str | Path | None = None, **kwargs) -> Path:
    """``build_tiny_m3_checkpoint`` once per machine: cached under ``$TMPDIR/embforge-test-cache``.

    The cache key holds the arguments and the tokenizer's data folder; a build goes to a private
    folder that is renamed into place (atomic), so parallel test sessions never see a half-written
    checkpoint.
    """
    root = Path(cache_root or Path(tempfile.gettempdir()) / "embforge-test-cache")
    data = shared_data_dir(kwargs.pop("data_dir", None))
    kwargs["data_dir"] = str(data) if data is not None else None
    key = hashlib.sha1(json.dumps({"v": 1, **kwargs}, sort_keys=True).encode()).hexdigest()[:12]
    target = root / f"tiny-m3-{key}"
    if (
        (target / "colbert_linear.pt").is_file()
        or (target / "config.json").is_file()
        and not kwargs.get("with_heads", True)
    ):
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    build_tiny_m3_checkpoint(tmp, **kwargs)
    try:
        os.rename(tmp, target)
    except OSError:  # another session won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------ named sizes (pretraining)
# XLM-R-style models from scratch for a freshly trained tokenizer (``embforge pretrain build``).
# "xlmr-base"/"xlmr-large" are XLM-R's own sizes (large = BGE-M3's backbone); all use XLM-R's
# position numbering (``pad + 1``), so ``max_length`` tokens need ``max_length + 2`` rows.


@dataclass(frozen=True)
class XLMRSize:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int


XLMR_SIZES: dict[str, XLMRSize] = {
    "xlmr-tiny": XLMRSize(64, 2, 2, 256),  # tests, CPU smoke runs
    "xlmr-mini": XLMRSize(128, 4, 2, 512),
    "xlmr-small": XLMRSize(256, 4, 4, 1024),
    "xlmr-medium": XLMRSize(512, 8, 8, 2048),
    "xlmr-base": XLMRSize(768, 12, 12, 3072),  # XLM-R base
    "xlmr-large": XLMRSize(1024, 24, 16, 4096),  # XLM-R large (BGE-M3's backbone)
}


def xlmr_config(size: str, tokenizer=None, vocab_size: int | None = None, max_length: int = 512, **overrides):
    """An ``XLMRobertaConfig`` of a named size whose vocabulary and special ids match ``tokenizer``.

    Args:
        size: one of ``XLMR_SIZES``.
        tokenizer: the tokenizer the model will use (vocab size, pad/bos/eos ids).
        vocab_size: instead of ``tokenizer``.
        max_length: longest input in tokens (the table gets ``max_length + pad_id + 1`` rows).
        overrides: any other ``XLMRobertaConfig`` field (e.g. ``hidden_dropout_prob``).

    Example:
        >>> cfg = xlmr_config("xlmr-large", vocab_size=250002)
        >>> cfg.hidden_size, cfg.num_hidden_layers, cfg.max_position_embeddings
        (1024, 24, 514)
    """
    from transformers import XLMRobertaConfig

    if size not in XLMR_SIZES:
        raise ConfigError(f"unknown model size {size!r}; choose from: {', '.join(XLMR_SIZES)}")
    ids: dict[str, int] = {}
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": bos, "eos_token_id": eos}
    if vocab_size is None:
        raise ConfigError("give a tokenizer or vocab_size to size the embedding table")
    pad = ids.get("pad_token_id", 1)
    return XLMRobertaConfig(
        vocab_size=int(vocab_size),
        max_position_embeddings=int(max_length) + int(pad) + 1,
        type_vocab_size=1,
        **asdict(XLMR_SIZES[size]),
        **{**ids, **overrides},
    )


def build_masked_lm(
    size: str,
    tokenizer=None,
    vocab_size: int | None = None,
    max_length: int = 512,
    seed: int = 0,
    **overrides,
):
    """A randomly initialised ``XLMRobertaForMaskedLM`` of a named size (seeded), for MLM/RetroMAE."""
    from transformers import XLMRobertaForMaskedLM

    config = xlmr_config(size, tokenizer, vocab_size, max_length, **overrides)
    torch.manual_seed(int(seed))
    return XLMRobertaForMaskedLM(config)
