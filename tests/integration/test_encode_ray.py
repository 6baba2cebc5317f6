"""`--engine ray` on a local Ray (``ray.init(num_cpus=2)``): the same shard files as one torchrun process."""

from __future__ import annotations

import json

import pytest
import torch

from embforge.data.shards import read_manifest
from embforge.model.sharded import encode_to_shards
from helpers.requires import require_module

pytestmark = [pytest.mark.slow, pytest.mark.integration]
HEADS = ("dense", "sparse", "multivector")


def test_ray_engine_writes_the_torchrun_shards(tiny_m3, tiny_m3_path, tmp_path):
    ray = require_module("ray", "pip install 'embforge[ray]'")
    from embforge.model.ray_engine import encode_to_shards_ray

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "text": f"document {i} about " + "word " * (i % 9)}) + "\n\n"
            for i in range(50)
        ),
        encoding="utf-8",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray actors run 1 thread each: the same kernels, the same bits
    try:
        encode_to_shards(
            tiny_m3, corpus, tmp_path / "torchrun", HEADS, 8, model=str(tiny_m3_path), rank=0, world=1
        )
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "ray" / "shard-000002.parquet").parent.mkdir()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        rep = encode_to_shards_ray(
            corpus, tmp_path / "ray", HEADS, 8, model=str(tiny_m3_path), workers=2, threads=1
        )
        assert rep.complete and rep.encoded == list(range(7))
        again = encode_to_shards_ray(
            corpus, tmp_path / "ray", HEADS, 8, model=str(tiny_m3_path), workers=2, threads=1
        )
        assert again.encoded == [] and len(again.skipped) == 7  # a re-run skips finished shards
    finally:
        ray.shutdown()
    for i in range(7):
        name = f"shard-{i:06d}.parquet"
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "torchrun" / name).read_bytes()
    assert read_manifest(tmp_path / "ray")["shards"] == read_manifest(tmp_path / "torchrun")["shards"]
