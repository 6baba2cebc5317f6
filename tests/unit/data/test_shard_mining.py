"""Mining from shards (embforge.data.shard_mining): the block scan equals exact search, and
`mine_file` with a shard folder as corpus mines what it mines from the same corpus file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embforge.data.mining import MiningConfig, mine_file
from embforge.data.shard_mining import ShardCorpusIndex
from embforge.data.shards import CorpusRow, check_job, embeddings_table, finalize, shard_name, write_shard
from embforge.data.teachers import EncoderTeacher
from embforge.errors import DataError
from embforge.model.sharded import encode_to_shards
from embforge.types import Embeddings

WORDS = "the dog runs fast across a green field while birds sing over quiet old river banks".split()


def _random_shards(d, sizes, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    check_job(d, {"model": None, "heads": ["dense"]})
    allv, start = [], 0
    for i, n in enumerate(sizes):
        v = rng.standard_normal((n, dim)).astype(np.float32)
        rows = [CorpusRow(f"d{start + j}", "", f"text {start + j}") for j in range(n)]
        write_shard(d / shard_name(i), embeddings_table(rows, Embeddings(dense=v)))
        allv.append(v)
        start += n
    assert finalize(d, len(sizes), start)
    return np.concatenate(allv)


def test_block_scan_equals_exact_top_k_and_reads_texts_from_shards(tmp_path):
    vecs = _random_shards(tmp_path, [9, 4, 13])
    idx = ShardCorpusIndex(tmp_path, block_rows=5, query_chunk=2, workdir=tmp_path, cached_shards=1)
    assert len(idx) == 26
    q = np.random.default_rng(1).standard_normal((3, 6)).astype(np.float32)
    scores, rows = idx.search(q, 8)
    want = q @ vecs.T
    exact = np.argsort(-want, axis=1, kind="stable")[:, :8]
    np.testing.assert_array_equal(rows, exact)
    np.testing.assert_allclose(scores, np.take_along_axis(want, exact, 1), rtol=1e-6)
    assert idx.texts_of(np.array([[25, 0, -1], [9, 12, 13]])) == [
        ["text 25", "text 0"],
        ["text 9", "text 12", "text 13"],
    ]
    np.testing.assert_array_equal(idx.vectors([3, 20]), vecs[[3, 20]])
    with pytest.raises(DataError, match="mine with the model that encoded the shards"):
        idx.search(np.zeros((1, 4), np.float32), 2)


def test_mine_from_shards_equals_mine_from_the_corpus_file(tiny_m3, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    texts = [" ".join(WORDS[i % 5 : i % 5 + 3 + i % 9]) + f" n{i}" for i in range(40)]
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"query": f"q {texts[i][:12]}", "positive": texts[i]}) + "\n" for i in range(0, 40, 7)
        )
    )
    encode_to_shards(tiny_m3, corpus, tmp_path / "shards", ("dense",), 9, rank=0, world=1)
    teacher = EncoderTeacher(tiny_m3, ("dense",))
    cfg = MiningConfig(top_k=10, n_negatives=4)
    mine_file(pairs, tmp_path / "a.jsonl", teacher, cfg, corpus=corpus)
    mine_file(pairs, tmp_path / "b.jsonl", teacher, cfg, corpus=tmp_path / "shards")
    a = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert x["neg"] == y["neg"] and x["pos"] == y["pos"]
        np.testing.assert_allclose(x["neg_scores"], y["neg_scores"], atol=1e-5)
        np.testing.assert_allclose(x["pos_scores"], y["pos_scores"], atol=1e-5)
