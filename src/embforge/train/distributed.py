"""torchrun / multi-process helpers: all-gather of embeddings with gradient for the
local part, gradient synchronisation, rank-aware batch slicing.

Every process encodes its slice of the global batch, all-gathers the query and
document embeddings of every head (token axes padded to the longest), and
computes the loss of the *whole* global batch, so each rank's documents are
negatives for every query. The backward of the gather keeps the gradient of the
local rows only; since every rank computed the same global loss, the local rows
receive the exact global gradient, and summing parameter gradients over ranks
(``sync_gradients``) yields exactly the single-process large-batch gradient.
(This is DDP's gradient all-reduce done explicitly: it works with GradCache's
several backward passes per step and with heads that a step does not use.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist

from embforge.train.outputs import map_output, pad_tokens
from embforge.types import EmbeddingOutput

__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "init_from_env",
    "gather_with_grad",
    "gather_output",
    "sync_gradients",
    "local_rows",
    "all_reduce_mean",
]

_TOKEN_AXIS = {"sparse", "multivector", "multivector_mask", "input_ids", "attention_mask"}


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def init_from_env() -> bool:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, nccl on GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


class _GatherLocalGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        bufs = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(bufs, x.contiguous())
        ctx.rank, ctx.rows = dist.get_rank(), x.shape[0]
        return torch.cat(bufs, dim=0)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return g[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather equal-sized (B, ...) tensors along dim 0; gradient flows to the local rows."""
    if not is_distributed():
        return x
    if x.requires_grad:
        return _GatherLocalGrad.apply(x)
    bufs = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(bufs, x.contiguous())
    return torch.cat(bufs, dim=0)


def _max_int(v: int, device: torch.device) -> int:
    t = torch.tensor([v], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def gather_output(out: EmbeddingOutput) -> EmbeddingOutput:
    """All-gather every head of an ``EmbeddingOutput`` (token axes padded to the global max)."""
    if not is_distributed():
        return out

    def gather(name: str, v: torch.Tensor) -> torch.Tensor:
        if name in _TOKEN_AXIS:
            v = pad_tokens(v, _max_int(v.shape[1], v.device))
        return gather_with_grad(v)

    return map_output(out, gather)


def sync_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum parameter gradients over ranks (one flat all-reduce)."""
    if not is_distributed():
        return
    ps = [p for p in params if p.requires_grad]
    grads = []
    for p in ps:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    i = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[i : i + n].view_as(g))
        i += n


def local_rows(n: int) -> slice:
    """This rank's slice of ``n`` global rows (``n`` must divide by the world size)."""
    w, r = world_size(), rank()
    if n % w:
        raise ValueError(
            f"global batch of {n} does not split over {w} processes; use a batch size divisible by {w}"
        )
    k = n // w
    return slice(r * k, (r + 1) * k)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()
