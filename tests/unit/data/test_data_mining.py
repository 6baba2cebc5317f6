"""Hard-negative mining: TopK-PercPos, margin, sampling, rescoring teachers, bounded memory."""

from __future__ import annotations

import json
import tracemalloc
import zlib

import numpy as np
import pytest

from embforge.data import read_records, write_beir, write_jsonl
from embforge.data.formats import CorpusDoc, Example, Qrel, Query
from embforge.data.mining import (
    CorpusIndex,
    MiningConfig,
    MiningQuery,
    MiningStats,
    mine,
    mine_file,
    select_negatives,
)
from embforge.data.teachers import DenseTeacher, EncoderTeacher
from embforge.errors import ConfigError
from embforge.types import Embeddings, SparseVectors

D = 8


def _unit(cos: float, axis: int) -> np.ndarray:
    """A unit vector with inner product ``cos`` with e0, the rest on ``axis``."""
    v = np.zeros(D, np.float32)
    v[0], v[axis] = cos, np.sqrt(1 - cos**2)
    return v


def _planted():
    vecs = {"q": _unit(1.0, 1), "pos": _unit(0.9, 1), "near-dup of pos": _unit(0.88, 2)}
    for i, c in enumerate([0.7, 0.6, 0.5, 0.4, 0.3, 0.2]):
        vecs[f"neg{i}"] = _unit(c, 3 + i % 5)
    return vecs, DenseTeacher(lambda texts, role: np.stack([vecs[t] for t in texts]))


def _mine_one(cfg: MiningConfig) -> tuple[Example, MiningStats]:
    vecs, teacher = _planted()
    index = CorpusIndex([t for t in vecs if t != "q"], teacher)
    stats = MiningStats()
    (ex,) = list(mine([MiningQuery("q", ("pos",))], index, teacher, cfg, stats))
    return ex, stats


def test_planted_near_duplicate_dropped_at_095_kept_at_1():
    ex, stats = _mine_one(MiningConfig(top_k=5, n_negatives=3, perc_pos=0.95))
    # 0.88 > 0.95 * 0.9 = 0.855: a likely false negative
    assert ex.neg == ["neg0", "neg1", "neg2"]
    assert stats.dropped_false_negative == 1 and stats.dropped_positive == 1
    assert ex.pos_scores == pytest.approx([0.9]) and ex.neg_scores == pytest.approx([0.7, 0.6, 0.5])
    ex, stats = _mine_one(MiningConfig(top_k=5, n_negatives=3, perc_pos=1.0))
    assert ex.neg == ["near-dup of pos", "neg0", "neg1"]
    assert stats.dropped_false_negative == 0
    assert "pos" not in ex.neg


def test_margin_and_no_filter():
    ex, stats = _mine_one(MiningConfig(top_k=8, n_negatives=2, perc_pos=None, margin=0.25))
    assert ex.neg == ["neg1", "neg2"]  # 0.9 - 0.25 = 0.65: drops 0.88 and 0.7
    assert stats.dropped_margin == 2
    ex, _ = _mine_one(MiningConfig(top_k=8, n_negatives=2, perc_pos=None))
    assert ex.neg == ["near-dup of pos", "neg0"]


def test_too_few_survivors_are_counted_not_hidden():
    ex, stats = _mine_one(MiningConfig(top_k=8, n_negatives=7, perc_pos=0.5))
    assert ex.neg == ["neg3", "neg4", "neg5"]  # threshold 0.45
    assert stats.short_queries == 1 and stats.queries_without_negatives == 0
    assert "fewer negatives than asked" in stats.summary()


def test_range_sampling_is_seeded_and_stays_in_window():
    cfg = MiningConfig(top_k=6, n_negatives=2, perc_pos=None, sampling="range", rank_range=(2, 6), seed=3)
    texts = [f"d{i}" for i in range(10)]
    scores = np.linspace(0.9, 0.1, 10)
    picks = set()
    for seed in range(20):
        rng = np.random.default_rng([seed, 0])
        neg, sc = select_negatives(texts, scores, {"d0"}, 1.0, cfg, rng, MiningStats())
        assert len(neg) == 2 and all(
            n in {"d3", "d4", "d5", "d6"} for n in neg
        )  # ranks 2..5 after d0 removed
        assert sc == sorted(sc, reverse=True)
        picks.update(neg)
    assert picks == {"d3", "d4", "d5", "d6"}
    a = select_negatives(texts, scores, {"d0"}, 1.0, cfg, np.random.default_rng([3, 0]), MiningStats())
    b = select_negatives(texts, scores, {"d0"}, 1.0, cfg, np.random.default_rng([3, 0]), MiningStats())
    assert a == b


def test_bad_settings_listed_together():
    with pytest.raises(ConfigError, match=r"perc_pos=1.5 must be in \(0, 1\].*unknown sampling 'best'"):
        MiningConfig(perc_pos=1.5, sampling="best")
    with pytest.raises(ConfigError, match=r"rank_range=\(5, 200\) must satisfy"):
        MiningConfig(top_k=100, sampling="range", rank_range=(5, 200))


class _FakeEncoder:
    """Planted dense + sparse + multivector outputs, to check the hybrid rescoring formula."""

    def __init__(self, table):
        self.table = table

    def encode(self, texts, role, heads, batch_size, max_length):
        rows = [self.table[t] for t in texts]
        return Embeddings(
            dense=np.stack([r[0] for r in rows]).astype(np.float32),
            sparse=SparseVectors.from_dicts([r[1] for r in rows], 100) if "sparse" in heads else None,
            multivector=[r[2] for r in rows] if "multivector" in heads else None,
        )


def test_hybrid_teacher_rescores_and_reranks():
    mv = np.eye(2, dtype=np.float32)
    table = {
        "q": (_unit(1.0, 1), {7: 1.0}, mv),
        "pos": (_unit(0.9, 1), {7: 2.0}, mv),  # 0.9 + 0.3*2 + 1 = 2.5
        "a": (_unit(0.8, 2), {}, mv[:1]),  # 0.8 + 0 + 0.5 = 1.3
        "b": (_unit(0.5, 3), {7: 2.5}, mv),  # 0.5 + 0.75 + 1 = 2.25 < 0.95 * 2.5: kept
        "c": (_unit(0.4, 4), {7: 4.0}, mv),  # 0.4 + 1.2 + 1 = 2.6 > 2.5: dropped
    }
    teacher = EncoderTeacher(_FakeEncoder(table), heads=("dense", "sparse", "multivector"))
    assert teacher.rescores
    index = CorpusIndex(["pos", "a", "b", "c"], teacher)
    stats = MiningStats()
    (ex,) = mine([MiningQuery("q", ("pos",))], index, teacher, MiningConfig(top_k=3, n_negatives=3), stats)
    assert ex.pos_scores == pytest.approx([2.5])
    assert ex.neg == ["b", "a"] and ex.neg_scores == pytest.approx([2.25, 1.3])
    assert stats.dropped_false_negative == 1
    dense = EncoderTeacher(_FakeEncoder(table))
    assert not dense.rescores
    (ex,) = mine(
        [MiningQuery("q", ("pos",))], CorpusIndex(["pos", "a", "b", "c"], dense), dense, MiningConfig(top_k=3)
    )
    assert ex.neg == ["a", "b", "c"]


def _hash_teacher(dim: int = 16) -> DenseTeacher:
    def fn(texts, role):
        out = np.empty((len(texts), dim), np.float32)
        for i, t in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(t.encode())).standard_normal(dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return DenseTeacher(fn)


def test_mine_file_pairs_and_beir(tmp_path):
    pairs = [{"query": f"q{i}", "positive": f"doc {i}", "lang": "en"} for i in range(300)]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    stats = mine_file(
        tmp_path / "pairs.jsonl", tmp_path / "out.jsonl.gz", _hash_teacher(), MiningConfig(top_k=20)
    )
    out = list(read_records(tmp_path / "out.jsonl.gz", kind="example"))
    assert [e.query for e in out] == [p["query"] for p in pairs]
    assert all(len(e.neg) == len(e.neg_scores) and e.pos[0] not in e.neg for e in out)
    assert stats.queries == 300 and stats.negatives == sum(len(e.neg) for e in out)
    assert all(
        max(e.neg_scores) <= 0.95 * e.pos_scores[0] + 1e-6 for e in out if e.neg and e.pos_scores[0] > 0
    )

    docs = [CorpusDoc(f"d{i}", f"doc {i}") for i in range(50)]
    write_beir(
        tmp_path / "beir",
        docs,
        [Query("a", "q1"), Query("b", "q2")],
        [Qrel("a", "d1", 1), Qrel("b", "d2", 0)],
        "train",
    )
    stats = mine_file(
        tmp_path / "beir",
        tmp_path / "b.jsonl",
        _hash_teacher(),
        MiningConfig(top_k=10, perc_pos=None),
        beir_split="train",
    )
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a"]  # b has no positive (grade 0)
    assert lines[0]["pos"] == ["doc 1"] and len(lines[0]["neg"]) == 7
    assert stats.skipped_without_positive == 1 and "1 BEIR queries skipped" in stats.summary()


def _memory_peak(tmp_path, n_queries: int) -> int:
    rng = np.random.default_rng(0)
    corpus_vecs = rng.standard_normal((2000, 16)).astype(np.float32)
    corpus_vecs /= np.linalg.norm(corpus_vecs, axis=1, keepdims=True)
    q_vecs = rng.standard_normal((n_queries, 16)).astype(np.float32)

    def fn(texts, role):
        idx = np.fromiter((int(t[1:]) for t in texts), np.int64, len(texts))
        return (q_vecs if role == "query" else corpus_vecs)[idx]

    teacher = DenseTeacher(fn)
    src = tmp_path / f"q{n_queries}.jsonl"
    write_jsonl(
        src, ({"query": f"q{i}", "positive": f"d{i % 2000}", "source": "s"} for i in range(n_queries))
    )
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": f"d{i}"}) + "\n" for i in range(2000)))
    cfg = MiningConfig(top_k=15, n_negatives=7, query_batch=256)
    tracemalloc.start()
    stats = mine_file(src, tmp_path / "out.jsonl", teacher, cfg, corpus=tmp_path / "corpus.jsonl")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.queries == n_queries
    return peak


def test_mining_memory_is_bounded_whatever_the_query_count(tmp_path):
    _memory_peak(tmp_path, 50)  # warm-up: first-import allocations (faiss, tqdm) are traced too
    small = _memory_peak(tmp_path, 500)
    big = _memory_peak(tmp_path, 10_000)
    # 20x the queries: the peak stays put (chunks of 256 queries), far below holding the output
    assert big < 2_000_000, big
    assert big < small * 1.25 + 200_000, (small, big)


def test_corpus_batches_of_only_seen_texts_do_not_end_indexing():
    teacher = _hash_teacher(8)
    texts = ["a", "b"] * 10 + ["c", "d"]  # batches of 4: the middle ones hold only repeats
    index = CorpusIndex(iter(texts), teacher, batch=4)
    assert index.texts == ["a", "b", "c", "d"] and len(index) == 4


def test_hnsw_index_finds_the_same_negatives_as_exact():
    rng = np.random.default_rng(5)
    docs = rng.standard_normal((3000, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    vec = {f"d{i}": docs[i] for i in range(len(docs))}
    vec.update({f"q{i}": docs[i] + 0.3 * rng.standard_normal(16).astype(np.float32) for i in range(200)})
    teacher = DenseTeacher(lambda texts, role: np.stack([vec[t] for t in texts]))
    queries = [MiningQuery(f"q{i}", (f"d{i}",)) for i in range(200)]
    got = {}
    for kind in ("flat", "hnsw"):
        cfg = MiningConfig(top_k=20, n_negatives=5, index=kind)
        index = CorpusIndex(list(vec)[:3000], teacher, kind=kind, ef_search=cfg.ef_search)
        got[kind] = [ex.neg for ex in mine(queries, index, teacher, cfg)]
    same = sum(a == b for a, b in zip(got["flat"], got["hnsw"]))
    assert same >= 190, same
    with pytest.raises(ConfigError, match="unknown index 'ivf'"):
        MiningConfig(index="ivf")


def test_short_examples_can_go_to_a_side_file(tmp_path):
    vecs, teacher = _planted()
    write_jsonl(
        tmp_path / "in.jsonl", [{"query": "q", "positive": "pos"}, {"query": "neg0", "positive": "neg1"}]
    )
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in vecs if t != "q"))
    cfg = MiningConfig(top_k=8, n_negatives=6, perc_pos=0.95)
    stats = mine_file(
        tmp_path / "in.jsonl", tmp_path / "out.jsonl", teacher, cfg, corpus=tmp_path / "corpus.jsonl",
        short_path=tmp_path / "short.jsonl",
    )  # fmt: skip
    full = list(read_records(tmp_path / "out.jsonl"))
    short = list(read_records(tmp_path / "short.jsonl"))
    assert [e.query for e in full] == ["q"] and len(full[0].neg) == 6
    assert [e.query for e in short] == ["neg0"] and stats.short_queries == 1


def test_dense_teacher_rescore_is_the_inner_product():
    table = {"q": [1.0, 0.0], "r": [0.0, 1.0], "a": [0.5, 0.5], "b": [2.0, 0.0]}
    teacher = DenseTeacher(lambda texts, role: np.array([table[t] for t in texts], np.float32))
    assert not teacher.rescores  # mining never calls it: the candidate search gives the same score
    out = teacher.rescore(["q", "r"], [["a", "b"], []])
    np.testing.assert_allclose(out[0], [0.5, 2.0])
    assert out[1].shape == (0,)
