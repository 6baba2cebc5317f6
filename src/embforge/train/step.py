"""The optimisation step shared by every recipe: forward, loss, backward.

Losses are pure functions of embeddings and scores; this module owns everything
that touches the model in a step: the plain step, the GradCache step, the
backward pass and the cross-device gather of the outputs before the loss.

GradCache: large contrastive batches in small memory, for all heads at once.

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
The encoder is passed in as a function (``encode(batch) -> EmbeddingOutput``).

Both steps encode rows **grouped by length** (``length_groups``): rows are sorted by
token count and cut where a row is shorter than half the group's longest, so a few
long texts no longer pad a whole batch of short ones. The batch itself (and so the
in-batch negatives) is unchanged; only the padding goes away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from embforge.train.distributed import gather_output
from embforge.train.outputs import cat_outputs, map_output, pad_tokens, slice_output, tensor_fields
from embforge.types import Batch, EmbeddingOutput, LossOutput

__all__ = [
    "plain_step",
    "cached_step",
    "contrastive_step",
    "forward_backward",
    "backward",
    "gathered_loss",
    "sub_batches",
    "length_groups",
    "encode_grouped",
]

EncodeFn = Callable[[Batch], EmbeddingOutput]
LossFn = Callable[[EmbeddingOutput, EmbeddingOutput], LossOutput]
_GRAD_FIELDS = ("dense", "sparse", "multivector")
_TOKEN_FIELDS = ("sparse", "multivector", "multivector_mask")


def _detach(out: LossOutput) -> LossOutput:
    return LossOutput(out.total.detach(), {k: v.detach() for k, v in out.parts.items()})


def backward(out: LossOutput, scale: float = 1.0) -> LossOutput:
    """Backpropagate ``scale * out.total``; return the loss detached (for the log)."""
    (out.total * scale).backward()
    return _detach(out)


def forward_backward(forward: Callable[[Any], LossOutput], batch: Any) -> LossOutput:
    """The step of models that return their own ``LossOutput`` (MLM, RetroMAE): forward, backward."""
    return backward(forward(batch))


def gathered_loss(
    loss: Callable[..., LossOutput], group_size: int, teacher_scores: torch.Tensor | None = None
) -> LossFn:
    """``loss`` on the outputs of every process (in-batch negatives across devices).

    Each process's queries and documents are all-gathered (with gradient to the local
    rows) before the loss; in one process this is the identity.
    """

    def loss_fn(q: EmbeddingOutput, d: EmbeddingOutput) -> LossOutput:
        return loss(gather_output(q), gather_output(d), group_size=group_size, teacher_scores=teacher_scores)

    return loss_fn


def contrastive_step(
    encode: EncodeFn,
    q_batch: Batch,
    d_batch: Batch,
    loss_fn: LossFn,
    sub_batch_size: int | None,
    sub_batch_tokens: int | None = None,
) -> LossOutput:
    """``cached_step`` when ``sub_batch_size`` or ``sub_batch_tokens`` is set, else ``plain_step``."""
    if sub_batch_size or sub_batch_tokens:
        return cached_step(
            encode, q_batch, d_batch, loss_fn, sub_batch_size, sub_batch_tokens=sub_batch_tokens
        )
    return plain_step(encode, q_batch, d_batch, loss_fn)


def plain_step(
    encode: EncodeFn,
    q_batch: Batch,
    d_batch: Batch,
    loss_fn: LossFn,
    backward_scale: float = 1.0,
    group_by_length: bool = True,
) -> LossOutput:
    """Encode queries and documents with a graph, compute the loss, backpropagate.

    ``group_by_length`` encodes the queries and documents together in length groups
    (same result, less padding, fewer forward calls).
    """
    both = _union(q_batch, d_batch) if group_by_length else None
    if both is not None:
        q, d = _split(encode_grouped(encode, both), q_batch, d_batch)
    elif group_by_length:
        q, d = encode_grouped(encode, q_batch), encode_grouped(encode, d_batch)
    else:
        q, d = encode(q_batch), encode(d_batch)
    return backward(loss_fn(q, d), backward_scale)


def _right_padded(b: Batch) -> bool:
    return bool(b.attention_mask[:, 0].all())


def _union(q: Batch, d: Batch) -> Batch | None:
    """Queries and documents in one right-padded batch (None when a side is left-padded)."""
    if not (_right_padded(q) and _right_padded(d)):
        return None
    t = max(q.input_ids.shape[1], d.input_ids.shape[1])
    ids = torch.cat([pad_tokens(q.input_ids, t), pad_tokens(d.input_ids, t)])
    mask = torch.cat([pad_tokens(q.attention_mask, t), pad_tokens(d.attention_mask, t)])
    pm = None
    if q.pool_mask is not None or d.pool_mask is not None:
        pm = torch.cat(
            [pad_tokens(b.attention_mask if b.pool_mask is None else b.pool_mask, t) for b in (q, d)]
        )
    return Batch(ids, mask, pm)


def _split(out: EmbeddingOutput, q: Batch, d: Batch) -> tuple[EmbeddingOutput, EmbeddingOutput]:
    n = len(q)
    return _pad_like(slice_output(out, 0, n), q), _pad_like(slice_output(out, n, n + len(d)), d)


def length_groups(
    batch: Batch, max_rows: int | None = None, ratio: float = 0.5, max_tokens: int | None = None
) -> list[torch.Tensor]:
    """Row indices sorted by length (longest first) and cut into groups.

    A new group starts when a row is shorter than ``ratio`` times the group's longest row,
    when the group holds ``max_rows`` rows, or when one more row would make the group's padded
    size (rows x longest row) exceed ``max_tokens``: with a token budget short texts share a
    forward pass with many others and long ones with few, so every pass costs about the same
    memory (the length-bucketed batch sizes of BGE M3-Embedding, Chen et al. 2024, inside a step).

    Example:
        >>> m = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]])
        >>> [g.tolist() for g in length_groups(Batch(m, m))]
        [[0, 2, 3], [1]]
        >>> [g.tolist() for g in length_groups(Batch(m, m), ratio=0.0, max_tokens=8)]
        [[0, 2], [3, 1]]
    """
    lengths = batch.attention_mask.sum(1).tolist()
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups, start = [], 0
    for i in range(1, len(order) + 1):
        longest = lengths[order[start]]
        if (
            i == len(order)
            or (max_rows and i - start >= max_rows)
            or (max_tokens and (i - start + 1) * longest > max_tokens)
            or lengths[order[i]] < ratio * longest
        ):
            groups.append(torch.tensor(order[start:i], dtype=torch.long))
            start = i
    return groups


def _take(batch: Batch, rows: torch.Tensor) -> Batch:
    rows = rows.to(batch.input_ids.device)
    pm = None if batch.pool_mask is None else batch.pool_mask[rows]
    return _trim(Batch(batch.input_ids[rows], batch.attention_mask[rows], pm))


def _reorder(out: EmbeddingOutput, groups: list[torch.Tensor], batch: Batch) -> EmbeddingOutput:
    inv = torch.argsort(torch.cat(groups))
    return _pad_like(map_output(out, lambda _k, v: v[inv.to(v.device)]), batch)


def encode_grouped(encode: EncodeFn, batch: Batch, max_rows: int | None = None) -> EmbeddingOutput:
    """``encode(batch)`` computed per length group, in the batch's row order (keeps the graph)."""
    groups = length_groups(batch, max_rows)
    if len(groups) == 1:
        return _pad_like(encode(_trim(batch)), batch)
    return _reorder(cat_outputs([encode(_take(batch, g)) for g in groups]), groups, batch)


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


def _embed_no_grad(
    encode: EncodeFn, batch: Batch, groups: list[torch.Tensor]
) -> tuple[EmbeddingOutput, list[Batch], list[tuple]]:
    """The representation pass: no autograd state at all (``inference_mode``), one clone at the end."""
    states, outs = [], []
    parts = [_take(batch, g) for g in groups]  # ordinary tensors: the grad pass reuses them
    with torch.inference_mode():
        for b in parts:
            states.append(_rng_state())
            outs.append(encode(b))
        emb = _reorder(cat_outputs(outs), groups, batch)
    # inference tensors cannot enter autograd: the loss needs ordinary (small) copies
    return map_output(emb, lambda _k, v: v.clone()), parts, states


def _wants_grad(k: str, v: torch.Tensor) -> bool:
    """Head outputs that carry gradient: the built-in heads' and every floating plugin-head output."""
    return k in _GRAD_FIELDS or (k.startswith("extra:") and v.is_floating_point())


def _leaf(out: EmbeddingOutput) -> EmbeddingOutput:
    return map_output(out, lambda k, v: v.detach().requires_grad_(True) if _wants_grad(k, v) else v)


def _grads(leaf: EmbeddingOutput) -> dict[str, torch.Tensor]:
    return {k: v.grad for k, v in tensor_fields(leaf).items() if _wants_grad(k, v) and v.grad is not None}


def _grad_or_zero(grads: dict[str, torch.Tensor], k: str, leaf: EmbeddingOutput) -> torch.Tensor:
    return grads[k] if k in grads else torch.zeros_like(tensor_fields(leaf)[k])


def _backprop_cached(
    encode: EncodeFn,
    parts: list[Batch],
    groups: list[torch.Tensor],
    states: list[tuple],
    grads: dict[str, torch.Tensor],
) -> None:
    if not grads:
        return
    for b, rows, state in zip(parts, groups, states):
        _set_rng_state(state)
        out = encode(b)
        surrogate = None
        for k, g in grads.items():
            x = tensor_fields(out).get(k)
            if x is None:
                continue
            gs = g[rows.to(g.device)]
            if k in _TOKEN_FIELDS:  # token axis: the sub-batch may be shorter
                gs = gs[:, : x.shape[1]]
            term = (x.float() * gs.float()).sum()
            surrogate = term if surrogate is None else surrogate + term
        if surrogate is not None and surrogate.requires_grad:
            surrogate.backward()


def cached_step(
    encode: EncodeFn,
    q_batch: Batch,
    d_batch: Batch,
    loss_fn: LossFn,
    sub_batch_size: int | None,
    backward_scale: float = 1.0,
    sub_batch_tokens: int | None = None,
) -> LossOutput:
    """One GradCache step: same gradients as ``plain_step``, activations of one sub-batch.

    Args:
        encode: model forward (with the caller's autocast / train mode) -> EmbeddingOutput.
        q_batch: (Q, T) queries; d_batch: (Q*G, T') documents grouped per query.
        loss_fn: maps (query, document) EmbeddingOutputs to a LossOutput (may all-gather).
        sub_batch_size: at most this many texts per forward pass (sub-batches are length groups).
        backward_scale: multiply the loss by this before backpropagating.
        sub_batch_tokens: at most this many padded tokens (rows x longest row) per forward pass
            (``embforge.train.memory`` plans it from a memory budget); None = rows only.
    """
    both = _union(q_batch, d_batch)
    if both is None:  # left padding: keep the two sides apart
        q_groups = length_groups(q_batch, sub_batch_size, max_tokens=sub_batch_tokens)
        d_groups = length_groups(d_batch, sub_batch_size, max_tokens=sub_batch_tokens)
        q_emb, q_parts, q_states = _embed_no_grad(encode, q_batch, q_groups)
        d_emb, d_parts, d_states = _embed_no_grad(encode, d_batch, d_groups)
    else:
        groups = length_groups(both, sub_batch_size, max_tokens=sub_batch_tokens)
        emb, parts, states = _embed_no_grad(encode, both, groups)
        q_emb, d_emb = _split(emb, q_batch, d_batch)
    after = _rng_state()
    q_leaf, d_leaf = _leaf(q_emb), _leaf(d_emb)
    out = loss_fn(q_leaf, d_leaf)
    (out.total * backward_scale).backward()
    if both is None:
        _backprop_cached(encode, q_parts, q_groups, q_states, _grads(q_leaf))
        _backprop_cached(encode, d_parts, d_groups, d_states, _grads(d_leaf))
    else:
        t = both.input_ids.shape[1]
        qg, dg = _grads(q_leaf), _grads(d_leaf)
        merged = {}
        for k in set(qg) | set(dg):
            side = [_grad_or_zero(g, k, leaf) for g, leaf in ((qg, q_leaf), (dg, d_leaf))]
            if k in _TOKEN_FIELDS:
                off = q_batch.input_ids.shape[1] - side[0].shape[1]
                side = [pad_tokens(x, t - off) for x in side]
            merged[k] = torch.cat(side)
        _backprop_cached(encode, parts, groups, states, merged)
    _set_rng_state(after)
    return _detach(out)


def _pad_like(out: EmbeddingOutput, batch: Batch) -> EmbeddingOutput:
    """Align token axes with the full batch: pad them to its length and restore its ids / mask."""
    t = batch.input_ids.shape[1]
    t_out = out.input_ids.shape[1] if out.input_ids is not None else t

    def fix(k: str, v: torch.Tensor) -> torch.Tensor:
        if k == "input_ids":
            return batch.input_ids.to(v.device)
        if k == "attention_mask":
            return batch.attention_mask.to(v.device)
        if k in _TOKEN_FIELDS:
            target = t - (t_out - v.shape[1])
            return pad_tokens(v, target) if v.shape[1] < target else v[:, :target]
        return v

    return map_output(out, fix)
