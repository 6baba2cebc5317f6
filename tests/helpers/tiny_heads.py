"""A tiny three-head encoder for tests of the training engine (tensor level).

Mirrors the BGE-M3 heads of SPEC section 1 on a 2-layer random transformer so GradCache
and the distributed gather can be tested without the full Encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embforge.types import Batch, EmbeddingOutput


class TinyBackbone(nn.Module):
    """Token + position embeddings and 2 transformer layers (pure torch: fast to import)."""

    def __init__(self, vocab: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(64, hidden)
        layer = nn.TransformerEncoderLayer(hidden, 2, 2 * hidden, dropout=dropout, batch_first=True)
        self.layers = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.shape[1]))[None]
        return self.layers(x, src_key_padding_mask=~attention_mask.bool())


class TinyThreeHead(nn.Module):
    def __init__(self, vocab: int = 50, hidden: int = 16, seed: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = TinyBackbone(vocab, hidden, dropout)
        self.sparse_linear = nn.Linear(hidden, 1)
        self.colbert_linear = nn.Linear(hidden, hidden)

    def forward(self, batch: Batch) -> EmbeddingOutput:
        h = self.backbone(batch.input_ids, batch.attention_mask)
        m = batch.attention_mask
        sparse = torch.relu(self.sparse_linear(h)).squeeze(-1) * m
        mv = F.normalize(self.colbert_linear(h[:, 1:]), dim=-1) * m[:, 1:, None]
        return EmbeddingOutput(
            dense=F.normalize(h[:, 0], dim=-1),
            sparse=sparse,
            multivector=mv,
            multivector_mask=m[:, 1:],
            input_ids=batch.input_ids,
            attention_mask=m,
        )


def random_batch(n: int, max_len: int, seed: int, vocab: int = 50) -> Batch:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, max_len + 1, (n,), generator=g)
    ids = torch.randint(5, vocab, (n, max_len), generator=g)
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    ids[:, 0] = 1  # [CLS]-like
    t = int(lengths.max())
    return Batch(ids[:, :t], mask[:, :t])


def global_batches():
    """The global batch used by the distributed test: 4 queries, 2 documents each."""
    return random_batch(4, 7, seed=11), random_batch(8, 10, seed=12)


def slice_batch(b: Batch, rows: slice) -> Batch:
    return Batch(b.input_ids[rows], b.attention_mask[rows])


def distributed_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """One process of the 2-process gloo test: local slice -> gather -> global loss -> synced grads."""
    import torch.distributed as dist

    from embforge.losses import M3SelfDistillLoss
    from embforge.train.distributed import gather_output, local_rows, sync_gradients
    from embforge.train.step import cached_step, plain_step

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        q, d = global_batches()
        rq = local_rows(len(q))
        rd = slice(rq.start * 2, rq.stop * 2)
        ql, dl = slice_batch(q, rq), slice_batch(d, rd)
        loss = M3SelfDistillLoss(temperature=0.1)

        def fn(a, b):
            return loss(gather_output(a), gather_output(b), group_size=2)

        results = {}
        for name in ("plain", "cached"):
            model = TinyThreeHead(seed=1)
            if name == "plain":
                out = plain_step(model, ql, dl, fn)
            else:
                out = cached_step(model, ql, dl, fn, sub_batch_size=1)
            sync_gradients(model.parameters())
            results[name] = (
                float(out.total),
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            )
        if rank == 0:
            torch.save(results, out_file)
    finally:
        dist.destroy_process_group()
