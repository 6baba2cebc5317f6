"""Fast inference: texts -> numpy ``Embeddings`` in input order.

Speed comes from: tokenizing once, sorting by TOKEN length (not characters), batching by a
token budget (little padding, big batches of short texts), ``torch.inference_mode``, and
optional bf16 (a real gain only where the hardware has bf16 matmul: AMX CPUs, GPUs; on a CPU a
bf16 copy of the backbone's weights, elsewhere autocast: ``embforge.model.precision``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from embforge.errors import ConfigError
from embforge.model.attention import inference_attention
from embforge.model.precision import cast_backbone, cast_weights, resolve_dtype
from embforge.text import (
    TokenizedTexts,
    check_texts,
    collate,
    frame_token_ids,
    token_budget_batches,
    tokenize_texts,
    warn_truncated,
)
from embforge.types import Embeddings

if TYPE_CHECKING:
    from embforge.model.encoder import Encoder

__all__ = ["DTYPES", "LONG_INPUTS", "cpu_has_bf16", "encode", "encode_ids", "set_progress_default"]

logger = logging.getLogger("embforge")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": None}
LONG_INPUTS = ("truncate", "mcls")


def cpu_has_bf16() -> bool:
    """True if this CPU has bf16 matrix instructions (AMX or AVX512-BF16)."""
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:  # pragma: no cover - very old torch
            pass
    return False


def _choice(value: str, choices: Iterable[str], what: str) -> str:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose from: {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class _Plan:
    """A checked encode call: what to run, on which tokens."""

    heads: tuple[str, ...]
    dim: int | None
    mcls: int | None
    autocast: torch.dtype | None
    weights: torch.dtype | None  # a backbone copy cast to this dtype (bf16 on CPU), not autocast
    prefix: str
    tok: TokenizedTexts
    lengths: np.ndarray  # (N,) tokens per text
    batches: list[np.ndarray]


#: The bar default of ``encode`` when a caller passes none: set once per command by the CLI's
#: ``--progress/--no-progress`` (unset there = on only when stderr is a terminal); None = by size.
PROGRESS_DEFAULT: list[bool | None] = [None]


def set_progress_default(on: bool | None) -> None:
    """Progress bars for every ``encode`` call that does not choose (``None`` = by size, >2,000 texts)."""
    PROGRESS_DEFAULT[0] = on


def encode(
    enc: Encoder,
    texts: str | Iterable[str],
    role: str = "document",
    heads: Sequence[str] | str = ("dense",),
    dim: int | None = None,
    batch_size: int = 128,
    max_length: int | None = None,
    dtype: str = "fp32",
    long_inputs: str = "truncate",
    max_tokens: int = 8192,
    show_progress: bool | None = None,
) -> Embeddings:
    """Encode texts to numpy, in input order.

    Args:
        enc: the ``Encoder``.
        texts: non-empty strings (a single string counts as one text).
        role: "query" or "document" (selects the instruction prefix, if the model has one).
        heads: any heads of the encoder ("dense", "sparse", "multivector", or a plugin head).
        dim: Matryoshka truncation of the dense vectors (renormalised); None = full size.
        batch_size: most texts per forward pass.
        max_length: token limit per text (default: the model's); longer texts are truncated with a
            warning, or see ``long_inputs``.
        dtype: "fp32" (default), "bf16" (on a CPU a cached bf16 copy of the backbone's weights with fp32
            heads, elsewhere autocast), "fp16" autocast, or "auto": bf16 where the device computes it
            natively (AMX/AVX512-BF16 CPUs, GPUs), else fp32 (``embforge.model.precision``; logged).
            Outputs are always float32.
        long_inputs: "truncate" or "mcls" (a [CLS] every ``config.mcls_stride`` tokens; the dense
            vector is the mean of their hidden states: MCLS, Chen et al., 2024, "BGE M3-Embedding").
        max_tokens: padded tokens per forward pass (batch size x longest text).
        show_progress: tqdm bar; default: ``set_progress_default``'s value when a command set one
            (``--progress/--no-progress``), else on for more than 2,000 texts.

    Returns:
        ``Embeddings`` with the asked heads filled (plugin heads in ``extra``), and ``num_tokens``.
    """
    texts = check_texts(texts)
    plan = _plan(enc, texts, role, heads, dim, batch_size, max_length, dtype, long_inputs, max_tokens)
    if show_progress is None:
        show_progress = PROGRESS_DEFAULT[0] if PROGRESS_DEFAULT[0] is not None else len(texts) > 2000
    rows = _run(enc, plan, len(texts), show_progress)
    parts = {h: enc.head(h).stack(rows[h], enc.vocab_size) for h in plan.heads}
    return Embeddings.from_parts(parts, num_tokens=plan.lengths)


def encode_ids(
    enc: Encoder,
    ids: Sequence[Sequence[int]],
    role: str = "document",
    heads: Sequence[str] | str = ("dense",),
    max_length: int | None = None,
    dtype: str = "fp32",
    max_tokens: int = 8192,
) -> Embeddings:
    """Encode token-id inputs directly (OpenAI's ``input: [[101, 7592, 102], ...]``), never decoded.

    Each input is framed by ``frame_token_ids`` (the role prefix and the tokenizer's special
    tokens added, those already present kept once) and truncated to ``max_length``; then it runs
    exactly like ``encode`` (same batches, heads and outputs, full dense size).
    """
    vocab = len(enc.tokenizer)
    rows = [[int(t) for t in x] for x in ids]
    bad = [(i, t) for i, x in enumerate(rows) for t in x if not 0 <= t < vocab][:1]
    if not rows or any(not x for x in rows) or bad:
        raise ConfigError(
            f"token ids must be non-empty lists of ids in 0..{vocab - 1}; got {bad or 'an empty list'}"
        )
    limit = enc.check_max_length(max_length)
    tok = frame_token_ids(enc.tokenizer, rows, enc.prefix(role), limit)
    plan = _plan(enc, [], role, heads, None, len(rows), max_length, dtype, "truncate", max_tokens, tok)
    out = _run(enc, plan, len(rows), False)
    parts = {h: enc.head(h).stack(out[h], enc.vocab_size) for h in plan.heads}
    return Embeddings.from_parts(parts, num_tokens=plan.lengths)


def _plan(  # noqa: PLR0913 - the options of encode(), checked in one place
    enc: Encoder,
    texts: list[str],
    role: str,
    heads: Sequence[str] | str,
    dim: int | None,
    batch_size: int,
    max_length: int | None,
    dtype: str,
    long_inputs: str,
    max_tokens: int,
    pretokenized: TokenizedTexts | None = None,
) -> _Plan:
    """Check the options, tokenize once (unless ``pretokenized``), cut the token-sorted texts into batches."""
    heads = enc.check_heads(heads)
    for h in heads:  # a head without trained weights says so once, when it is first used
        enc.head(h).warn_untrained()
    dim = enc.check_dim(dim)
    _choice(dtype, DTYPES, "dtype")
    if dtype == "auto":  # bf16 where the device multiplies it natively (AMX, AVX512-BF16, GPUs), else fp32
        choice = resolve_dtype("fp32" if getattr(enc, "backend", "torch") == "onnx" else "auto", enc.device)
        dtype = choice.dtype
        logger.info(choice.log_line())
    _choice(long_inputs, LONG_INPUTS, "long_inputs")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    limit = enc.check_max_length(max_length)
    mcls = enc.config.mcls_stride if long_inputs == "mcls" else None
    if mcls and enc.tokenizer.cls_token_id is None:
        raise ConfigError(
            "long_inputs='mcls' needs a tokenizer with a [CLS] token; use long_inputs='truncate'"
        )
    if getattr(enc, "backend", "torch") == "onnx" and dtype != "fp32":
        raise ConfigError(
            f"dtype={dtype!r} is a torch autocast; an ONNX export computes in the precision it was exported with "
            f"({getattr(enc, 'precision', '?')}): pass dtype='fp32', or use the torch checkpoint for {dtype}"
        )
    if dtype == "bf16" and enc.device.type == "cpu" and not cpu_has_bf16():
        logger.warning(
            "dtype='bf16' on a CPU without AVX512-BF16/AMX: bf16 matmul is emulated and usually SLOWER than fp32 "
            "here; use dtype='fp32' on this machine (bf16 pays off on AMX CPUs and GPUs)"
        )
    pre = enc.prefix(role)
    if pretokenized is not None:
        tok = pretokenized
    else:
        tok = tokenize_texts(enc.tokenizer, [pre + t for t in texts], limit, mcls_stride=mcls)
    warn_truncated(tok.truncated, len(tok.ids), limit, enc.model_limit)
    lengths = tok.lengths
    batches = token_budget_batches(lengths, max_tokens, batch_size)
    cast = getattr(enc, "backend", "torch") == "torch" and cast_weights(dtype, enc.device)
    auto, weights = (None, DTYPES[dtype]) if cast else (DTYPES[dtype], None)
    return _Plan(heads, dim, mcls, auto, weights, pre, tok, lengths, batches)


def _run(enc: Encoder, plan: _Plan, n: int, show_progress: bool) -> dict[str, list[Any]]:
    """Forward every batch (eval mode, no graph); per head, one numpy value per text in input order."""
    rows: dict[str, list[Any]] = {h: [None] * n for h in plan.heads}
    device = enc.device
    was_training = enc.training
    # eval mode for the call; walking the module tree costs ~0.4 ms a call, so only when some module trains
    switch = any(m.training for m in enc.modules())
    if switch:
        enc.eval()
    pad_side = getattr(enc.tokenizer, "padding_side", "right")
    tok = plan.tok
    cast = cast_backbone(enc.backbone, plan.weights) if plan.weights is not None else None
    attention = (
        inference_attention(enc, device, plan.autocast)
        if device.type == "cuda" and plan.autocast is not None
        else contextlib.nullcontext()
    )
    try:
        with (
            torch.inference_mode(),
            attention,
            tqdm(total=n, disable=not show_progress, desc="encode") as bar,
        ):
            for idx in plan.batches:
                ids = [tok.ids[i] for i in idx]
                batch = enc.mask_prefix(collate(ids, enc.pad_id, pad_side), ids, plan.prefix).to(device)
                cls_pos = [tok.cls_positions[i] for i in idx] if plan.mcls and tok.cls_positions else None
                if cast is not None:  # bf16 weights on CPU (oneDNN bf16/AMX kernels); the heads stay fp32
                    hidden = cast(
                        input_ids=batch.input_ids, attention_mask=batch.attention_mask, return_dict=True
                    )
                    out = enc.head_outputs(
                        hidden.last_hidden_state.float(), batch, plan.heads, plan.dim, cls_pos
                    )
                else:
                    with torch.autocast(device.type, dtype=plan.autocast, enabled=plan.autocast is not None):
                        out = enc.infer(batch, plan.heads, plan.dim, cls_pos)
                for h in plan.heads:
                    values = enc.head(h).to_numpy(out, batch, plan.lengths[idx])
                    for j, i in enumerate(idx):
                        rows[h][i] = values[j]
                bar.update(len(idx))
    finally:
        if switch:
            enc.train(was_training)
    return rows

