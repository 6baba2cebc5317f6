"""Fast inference: texts -> numpy ``Embeddings`` in input order.

Speed comes from: tokenizing once, sorting by TOKEN length (not characters), batching by a
token budget (little padding, big batches of short texts), ``torch.inference_mode``, and
optional bf16 autocast (a real gain only where the hardware has bf16 matmul: AMX CPUs, GPUs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from embforge.errors import ConfigError
from embforge.model.heads import truncate_dense
from embforge.text import check_texts, collate, token_budget_batches, tokenize_texts
from embforge.types import Embeddings, SparseVectors

__all__ = ["DTYPES", "LONG_INPUTS", "cpu_has_bf16", "encode"]

logger = logging.getLogger("embforge")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
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


def encode(
    enc,
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
        heads: any of "dense", "sparse", "multivector".
        dim: Matryoshka truncation of the dense vectors (renormalised); None = full size.
        batch_size: most texts per forward pass.
        max_length: token limit per text (default: the model's); longer texts are truncated with a
            warning, or see ``long_inputs``.
        dtype: "fp32" (default), "bf16" or "fp16" autocast; outputs are always float32.
        long_inputs: "truncate" or "mcls" (a [CLS] every ``config.mcls_stride`` tokens; the dense
            vector is the mean of their hidden states, SPEC section 1).
        max_tokens: padded tokens per forward pass (batch size x longest text).
        show_progress: tqdm bar; default on for more than 2,000 texts.

    Returns:
        ``Embeddings`` with the asked heads filled, and ``num_tokens``.
    """
    from embforge.model.encoder import warn_truncated

    texts = check_texts(texts)
    heads = enc.check_heads(heads)
    dim = enc.check_dim(dim)
    _choice(dtype, DTYPES, "dtype")
    _choice(long_inputs, LONG_INPUTS, "long_inputs")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    limit = enc.check_max_length(max_length)
    mcls = enc.config.mcls_stride if long_inputs == "mcls" else None
    if mcls and enc.tokenizer.cls_token_id is None:
        raise ConfigError(
            "long_inputs='mcls' needs a tokenizer with a [CLS] token; use long_inputs='truncate'"
        )
    if dtype == "bf16" and enc.device.type == "cpu" and not cpu_has_bf16():
        logger.warning(
            "dtype='bf16' on a CPU without AVX512-BF16/AMX: bf16 matmul is emulated and usually SLOWER than fp32 "
            "here; use dtype='fp32' on this machine (bf16 pays off on AMX CPUs and GPUs)"
        )
    pre = enc.prefix(role)
    tok = tokenize_texts(enc.tokenizer, [pre + t for t in texts], limit, mcls_stride=mcls)
    warn_truncated(tok.truncated, len(texts), tok, limit, enc.model_limit)
    lengths = tok.lengths
    batches = token_budget_batches(lengths, max_tokens, batch_size)
    if show_progress is None:
        show_progress = len(texts) > 2000
    from tqdm.auto import tqdm

    n = len(texts)
    dense = None
    sparse_rows: list = [None] * n
    mv: list = [None] * n
    device = enc.device
    autocast_dtype = DTYPES[dtype]
    was_training = enc.training
    enc.eval()
    pad_side = getattr(enc.tokenizer, "padding_side", "right")
    try:
        with torch.inference_mode(), tqdm(total=n, disable=not show_progress, desc="encode") as bar:
            for idx in batches:
                ids = [tok.ids[i] for i in idx]
                batch = enc.mask_prefix(collate(ids, enc.pad_id, pad_side), ids, pre).to(device)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    hidden = enc.hidden_states(batch)
                    out = enc.heads_from_hidden(hidden, batch, heads, None if mcls else dim)
                if "dense" in heads:
                    d = out.dense
                    if mcls:
                        d = _mcls_dense(enc, hidden, [tok.cls_positions[i] for i in idx], dim)
                    d = d.float().cpu().numpy()
                    if dense is None:
                        dense = np.empty((n, d.shape[1]), dtype=np.float32)
                    dense[idx] = d
                if "sparse" in heads:
                    _collect_sparse(
                        out.sparse.float().cpu().numpy(), batch.input_ids.cpu().numpy(), idx, sparse_rows
                    )
                if "multivector" in heads:
                    vecs = out.multivector.float().cpu().numpy()
                    for j, i in enumerate(idx):
                        mv[i] = vecs[j, : int(lengths[i]) - 1].copy()
                bar.update(len(idx))
    finally:
        enc.train(was_training)
    sparse = _to_csr(sparse_rows, enc.vocab_size) if "sparse" in heads else None
    return Embeddings(
        dense=dense, sparse=sparse, multivector=mv if "multivector" in heads else None, num_tokens=lengths
    )


def _mcls_dense(enc, hidden: torch.Tensor, positions: list[list[int]], dim: int | None) -> torch.Tensor:
    """Mean of the hidden states at the [CLS] positions (MCLS), normalised like the dense head."""
    rows = [hidden[j, pos].mean(0) for j, pos in enumerate(positions)]
    e = torch.stack(rows).float()  # (B, H)
    if enc.config.normalize:
        e = torch.nn.functional.normalize(e, dim=-1)
    return truncate_dense(e, dim, enc.config.normalize)


def _collect_sparse(w: np.ndarray, ids: np.ndarray, idx: np.ndarray, rows: list) -> None:
    """(B, T) weights + ids -> per text (unique term ids, max weight), weights > 0 only."""
    for j, i in enumerate(idx):
        keep = w[j] > 0
        t, v = ids[j][keep], w[j][keep]
        if len(t) == 0:
            rows[i] = (np.zeros(0, np.int32), np.zeros(0, np.float32))
            continue
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        rows[i] = (t[starts].astype(np.int32), np.maximum.reduceat(v, starts).astype(np.float32))


def _to_csr(rows: list, vocab_size: int) -> SparseVectors:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    values = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    return SparseVectors(indptr, indices.astype(np.int32), values.astype(np.float32), vocab_size)
