"""GradCache: large contrastive batches in small memory, for all heads at once.

Gao, Zhang, Han & Callan 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup" (GradCache); the same idea as sentence-transformers'
``CachedMultipleNegativesRankingLoss`` and M3's sub-batch encoding.

1. Encode the whole batch in sub-batches **without** a graph (remembering each
   sub-batch's RNG state so dropout can be replayed).
2. Compute the loss on the detached embeddings (every head: dense, sparse
   weights, multi-vector tokens) and backpropagate to the embeddings only.
3. Re-encode each sub-batch **with** a graph under the same RNG state and
   backpropagate the cached embedding gradients (``sum(out * grad)``).

Peak activation memory is that of one sub-batch; the parameter gradients equal
those of the plain large-batch step (``plain_step``), up to float rounding.
The encoder is passed in as a function: losses never own the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from embforge.losses.ops import cat_outputs, map_output, num_rows, tensor_fields
from embforge.types import Batch, EmbeddingOutput, LossOutput

__all__ = ["plain_step", "cached_step", "sub_batches"]

EncodeFn = Callable[[Batch], EmbeddingOutput]
LossFn = Callable[[EmbeddingOutput, EmbeddingOutput], LossOutput]
_GRAD_FIELDS = ("dense", "sparse", "multivector")


def _detach(out: LossOutput) -> LossOutput:
    return LossOutput(out.total.detach(), {k: v.detach() for k, v in out.parts.items()})


def plain_step(
    encode: EncodeFn, q_batch: Batch, d_batch: Batch, loss_fn: LossFn, backward_scale: float = 1.0
) -> LossOutput:
    """Encode queries and documents with a graph, compute the loss, backpropagate."""
    out = loss_fn(encode(q_batch), encode(d_batch))
    (out.total * backward_scale).backward()
    return _detach(out)


def _trim(batch: Batch) -> Batch:
    """Drop trailing all-padding columns (right padding); left-padded batches are kept."""
    used = batch.attention_mask.bool().any(0).nonzero()
    t = int(used.max()) + 1 if used.numel() else batch.input_ids.shape[1]
    if t == batch.input_ids.shape[1]:
        return batch
    pm = None if batch.pool_mask is None else batch.pool_mask[:, :t]
    return Batch(batch.input_ids[:, :t], batch.attention_mask[:, :t], pm)


def sub_batches(batch: Batch, size: int) -> list[Batch]:
    """Split into consecutive sub-batches of ``size`` rows, each trimmed of extra padding."""
    out = []
    for a in range(0, len(batch), size):
        pm = None if batch.pool_mask is None else batch.pool_mask[a : a + size]
        out.append(_trim(Batch(batch.input_ids[a : a + size], batch.attention_mask[a : a + size], pm)))
    return out


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _embed_no_grad(encode: EncodeFn, parts: list[Batch]) -> tuple[EmbeddingOutput, list[tuple]]:
    states, outs = [], []
    with torch.no_grad():
        for b in parts:
            states.append(_rng_state())
            outs.append(encode(b))
    return cat_outputs(outs), states


def _leaf(out: EmbeddingOutput) -> EmbeddingOutput:
    return map_output(out, lambda k, v: v.detach().requires_grad_(True) if k in _GRAD_FIELDS else v)


def _backprop_cached(
    encode: EncodeFn, parts: list[Batch], states: list[tuple], leaf: EmbeddingOutput
) -> None:
    grads = {k: v.grad for k, v in tensor_fields(leaf).items() if k in _GRAD_FIELDS and v.grad is not None}
    if not grads:
        return
    row = 0
    for b, state in zip(parts, states):
        _set_rng_state(state)
        out = encode(b)
        n = num_rows(out)
        surrogate = None
        for k, g in grads.items():
            x = getattr(out, k)
            if x is None:
                continue
            gs = g[row : row + n]
            if x.dim() >= 2 and k != "dense":  # token axis: the sub-batch may be shorter
                gs = gs[:, : x.shape[1]]
            term = (x.float() * gs.float()).sum()
            surrogate = term if surrogate is None else surrogate + term
        row += n
        if surrogate is not None and surrogate.requires_grad:
            surrogate.backward()


def cached_step(
    encode: EncodeFn,
    q_batch: Batch,
    d_batch: Batch,
    loss_fn: LossFn,
    sub_batch_size: int,
    backward_scale: float = 1.0,
) -> LossOutput:
    """One GradCache step: same gradients as ``plain_step``, activations of one sub-batch.

    Args:
        encode: model forward (with the caller's autocast / train mode) -> EmbeddingOutput.
        q_batch: (Q, T) queries; d_batch: (Q*G, T') documents grouped per query.
        loss_fn: maps (query, document) EmbeddingOutputs to a LossOutput (may all-gather).
        sub_batch_size: texts per forward pass with a graph.
        backward_scale: multiply the loss by this before backpropagating.
    """
    q_parts, d_parts = sub_batches(q_batch, sub_batch_size), sub_batches(d_batch, sub_batch_size)
    q_emb, q_states = _embed_no_grad(encode, q_parts)
    d_emb, d_states = _embed_no_grad(encode, d_parts)
    after = _rng_state()
    # the concatenated outputs align with the full batch's padding (token axes padded back)
    q_emb = _pad_like(q_emb, q_batch)
    d_emb = _pad_like(d_emb, d_batch)
    q_leaf, d_leaf = _leaf(q_emb), _leaf(d_emb)
    out = loss_fn(q_leaf, d_leaf)
    (out.total * backward_scale).backward()
    _backprop_cached(encode, q_parts, q_states, q_leaf)
    _backprop_cached(encode, d_parts, d_states, d_leaf)
    _set_rng_state(after)
    return _detach(out)


def _pad_like(out: EmbeddingOutput, batch: Batch) -> EmbeddingOutput:
    """Restore the full batch's input_ids / attention_mask (cat pads them with zeros)."""
    t = batch.input_ids.shape[1]
    changes = {}
    if out.input_ids is not None and out.input_ids.shape[1] <= t:
        changes["input_ids"] = batch.input_ids.to(out.input_ids.device)
    if out.attention_mask is not None and out.attention_mask.shape[1] <= t:
        changes["attention_mask"] = batch.attention_mask.to(out.attention_mask.device)
    return replace(out, **changes) if changes else out
