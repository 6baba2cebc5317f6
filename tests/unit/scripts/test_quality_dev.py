"""bench/quality.py's fusion dev split (issue 13): the NLI dev sets are built from files the mix
never reads, every query has its entailed hypothesis as the one relevant document and meets its
contradicting hypothesis in the corpus, and the sample is seeded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from helpers.paths import load_script

quality = load_script("bench/quality.py", "quality_bench")


def _snli(root: Path, n: int) -> None:
    d = root / "nli" / "snli_esnli"
    d.mkdir(parents=True)
    s1, s2, lab = [], [], []
    for i in range(n):
        for label, hyp in (
            ("entailment", f"a dog runs {i}"),
            ("contradiction", f"a cat sleeps {i}"),
            ("neutral", "x"),
        ):
            s1.append(f"premise {i} : a dog {i} runs in the park .")
            s2.append(hyp)
            lab.append(label)
    for name, rows in (("s1", s1), ("s2", s2), ("labels", lab)):
        (d / f"{name}.test").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _kornli(root: Path, n: int) -> None:
    d = root / "nli" / "kornli_xnli_ko"
    d.mkdir(parents=True)
    rows = ["sentence1\tsentence2\tgold_label"]
    for i in range(n):
        rows += [f"전제 {i}\t개 {i}\tentailment", f"전제 {i}\t고양이 {i}\tcontradiction"]
    (d / "xnli.test.ko.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def data(tmp_path, monkeypatch):
    _snli(tmp_path, 40)
    _kornli(tmp_path, 40)
    monkeypatch.setattr(quality, "DATA", tmp_path)
    return tmp_path


def test_nli_dev_sets_pair_each_premise_with_its_entailment_and_contradiction(data):
    args = argparse.Namespace(eval_docs=20, dev_queries=6)
    sets = quality.nli_dev_sets(args)
    assert [s.name for s in sets] == ["dev-nli-en", "dev-nli-ko"]
    for ds in sets:
        assert len(ds.doc_ids) == 20 and len(set(ds.doc_ids)) == 20 and len(ds.query_ids) == 6
        docs = dict(zip(ds.doc_ids, ds.doc_texts))
        for qid, text in zip(ds.query_ids, ds.query_texts):
            (rel,) = ds.qrels[qid]
            i = rel.split("-")[0]
            num = text.split()[1]  # "premise <i> ..." / "전제 <i>"
            assert docs[rel].split()[-1] == num and docs[f"{i}-con"].split()[-1] == num
            assert docs[rel] != docs[f"{i}-con"]
    again = quality.nli_dev_sets(args)
    assert [s.query_texts for s in again] == [s.query_texts for s in sets]


def test_dev_domains_select_and_reject(data, tmp_path):
    args = argparse.Namespace(eval_docs=20, dev_queries=6, dev_domains="nli")
    assert [s.name for s in quality.dev_sets(args, tmp_path)] == ["dev-nli-en", "dev-nli-ko"]
    with pytest.raises(SystemExit, match="unknown"):
        quality.dev_sets(argparse.Namespace(eval_docs=20, dev_queries=6, dev_domains="nli,msmarco"), tmp_path)


def test_cached_matrices_rescore_a_set_sampled_differently(tmp_path):
    import numpy as np

    def ds(queries, docs):
        return argparse.Namespace(query_ids=queries, doc_ids=docs)

    calls = []

    def compute(n, m, v):
        def f():
            calls.append(v)
            return {"dense": np.full((n, m), v, np.float32)}

        return f

    path = tmp_path / "mats" / "dev-en.npz"
    a = ds(["q1", "q2"], ["d1", "d2", "d3"])
    assert quality.cached_matrices(path, a, compute(2, 3, 1.0))["dense"][0, 0] == 1.0
    assert quality.cached_matrices(path, a, compute(2, 3, 9.0))["dense"][0, 0] == 1.0  # read back
    # same name and shape, other sample (another seed or --dev-queries): scored again
    b = ds(["q1", "q3"], ["d1", "d2", "d3"])
    assert quality.cached_matrices(path, b, compute(2, 3, 2.0))["dense"][0, 0] == 2.0
    assert calls == [1.0, 2.0]
    # a cache from before the key sidecar: kept when its shape fits, scored again when not
    path.with_suffix(".key").unlink()
    assert quality.cached_matrices(path, b, compute(2, 3, 3.0))["dense"][0, 0] == 2.0
    c = ds(["q1", "q2", "q3"], ["d1", "d2", "d3"])
    assert quality.cached_matrices(path, c, compute(3, 3, 4.0))["dense"].shape == (3, 3)
    assert calls == [1.0, 2.0, 4.0]


def test_evaluation_keeps_the_matrices_the_tune_stage_reads_instead_of_encoding(tmp_path):
    """The train/base stage's evaluation stores each set's score matrices where the tune stage
    looks (mats_dir); they are score_matrices' floats, so tuning encodes only its dev split; the
    base's dense+BM25 RRF reads the kept dense scores and gives the same nDCG@10 as encoding."""
    import numpy as np

    from embforge.eval.datasets import load_beir
    from embforge.eval.tune import score_matrices
    from helpers.fake_encoder import FakeEncoder

    demo = Path(__file__).parents[3] / "src/embforge/resources/demo"
    ds = load_beir(demo / "xquad-en", split="test", max_queries=20)
    args = argparse.Namespace(eval_max_length=None)
    enc = FakeEncoder()
    cache = quality.mats_dir(tmp_path, "m3_terms", 1, args)
    assert cache == tmp_path / "mats" / "m3_terms-s1" / "None"
    quality.evaluate(enc, ([ds], [], []), args, keep_in=cache)

    def encode_again():
        raise AssertionError("the tune stage encoded a set the evaluation had scored")

    kept = quality.cached_matrices(cache / f"{ds.name}.npz", ds, encode_again)
    ref = score_matrices(enc, ds, quality.HEADS)
    assert sorted(kept) == sorted(quality.HEADS)
    for h in quality.HEADS:
        np.testing.assert_array_equal(kept[h], ref[h])
    assert quality.dense_bm25_rrf(enc, [ds], args, cache) == quality.dense_bm25_rrf(enc, [ds], args)
    other = load_beir(demo / "xquad-en", split="test", max_queries=10)  # another sample, same name
    assert quality.load_matrices(cache / f"{ds.name}.npz", other) is None


def test_the_sentence_transformers_baseline_keeps_the_base_models_token_limit(tmp_path):
    """(a) is trained with documents cut at 128 tokens but evaluated, like every variant, at
    --eval-max-length 512: its saved folder must keep the base's limit. sentence-transformers 6
    loads the base with the tokenizer limit set to max_seq_length (256), and a folder saved with
    that refused max_length=512 (a fresh run of bench/quality.py failed there)."""
    import json

    from embforge.model.encoder import Encoder

    records = [
        {"query": f"question {i} about topic {i}", "pos": [f"topic {i} is explained here"], "neg": [f"other {i}"]}
        for i in range(8)
    ]
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    args = argparse.Namespace(steps=1, batch_size=4, lr=5e-5, temperature=0.05, doc_max_length=128)
    out, _ = quality.train_st(0, args, tmp_path)
    enc = Encoder.from_pretrained(str(out), heads=("dense",))
    assert enc.model_limit == 512
    assert enc.encode(["a question"], max_length=512).dense.shape == (1, 384)


def test_tune_selects_the_models_to_tune(tmp_path, monkeypatch):
    """--tune narrows the tune stage to the models named (within --only); the default tunes the base
    and every trained M3-family variant; a model that cannot be tuned is refused by name."""
    for seed in (0, 1):
        for v in ("st", "m3_nodistill", "m3_terms"):
            (tmp_path / f"{v}-s{seed}.json").write_text("{}")
    ran: list[str] = []
    monkeypatch.setattr(quality, "run_stage", lambda work, name, fn: ran.append(name))

    def stages(**kw):
        ran.clear()
        argv = ["--workdir", str(tmp_path), "--only", "base,st,m3_nodistill,m3_terms", "--seeds", "0", "1"]
        for k, v in kw.items():
            argv += [f"--{k}", v]
        quality.tune_stages(quality.parse_args(argv), tmp_path)
        return list(ran)

    assert stages() == [
        "tuned-base",
        "tuned-m3_nodistill-s0",
        "tuned-m3_terms-s0",
        "tuned-m3_nodistill-s1",
        "tuned-m3_terms-s1",
    ]
    assert stages(tune="base,m3_terms") == ["tuned-base", "tuned-m3_terms-s0", "tuned-m3_terms-s1"]
    with pytest.raises(SystemExit, match="st cannot be tuned"):
        stages(tune="st,m3_terms")
