"""The multilingual mix (issue 13) on small real slices of shared/data: split by article, no leak, deterministic."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from embforge.data import read_corpus, read_queries, read_records
from embforge.data.convert.squad import read_squad
from embforge.data.mining import MiningConfig
from embforge.data.mix import MixConfig, build_mix, held_apart
from embforge.data.teachers import DenseTeacher
from embforge.errors import DataError
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA


def _bag(texts: list[str], role: str) -> np.ndarray:
    """A bag-of-words hash teacher: shared words score high; no model needed."""
    out = np.zeros((len(texts), 128), np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 128] += 1.0
    return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-9)


def _head(src: Path, dst: Path, n: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8") as f:
        dst.write_text("".join(line for _, line in zip(range(n), f)), encoding="utf-8")


@pytest.fixture(scope="module")
def slice_root(tmp_path_factory) -> Path:
    """8 XQuAD articles (en, de), 300 SNLI / KorNLI lines, 400 STS rows, 40 Tatoeba lines (deu, kor)."""
    root = tmp_path_factory.mktemp("shared")
    for lang in ("en", "de"):
        doc = json.loads((DATA / f"xquad/xquad.{lang}.json").read_text(encoding="utf-8"))
        doc["data"] = doc["data"][:8]
        (root / "xquad").mkdir(exist_ok=True)
        (root / f"xquad/xquad.{lang}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    for f in ("s1.dev", "s2.dev", "labels.dev"):
        _head(DATA / "nli/snli_esnli" / f, root / "nli/snli_esnli" / f, 300)
    _head(DATA / "nli/kornli_xnli_ko/xnli.dev.ko.tsv", root / "nli/kornli_xnli_ko/xnli.dev.ko.tsv", 300)
    _head(DATA / "sts/stsb_en/sts-train.csv", root / "sts/stsb_en/sts-train.csv", 400)
    _head(DATA / "sts/korsts/sts-train.tsv", root / "sts/korsts/sts-train.tsv", 400)
    for code in ("deu", "kor"):
        for side in (code, "eng"):
            name = f"tatoeba.{code}-eng.{side}"
            _head(DATA / "tatoeba" / name, root / "tatoeba" / name, 40)
    return root


CFG = MixConfig(
    sts_files=(("sts/stsb_en/sts-train.csv", "en"), ("sts/korsts/sts-train.tsv", "ko")),
    tatoeba_langs=("deu", "kor"),
    per_group=25,
    max_corpus=200,
    mining=MiningConfig(top_k=10, n_negatives=1),
)


@pytest.fixture(scope="module")
def built(slice_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mix")
    return out, build_mix(slice_root, out, DenseTeacher(_bag), CFG)


def test_every_source_and_language_is_in_the_training_file(built):
    out, manifest = built
    recs = list(read_records(out / "train.jsonl", kind="example"))
    assert len(recs) == manifest["train"] > 0
    sources = {r.source for r in recs}
    assert {"xquad-en", "xquad-de", "tatoeba-deu", "tatoeba-kor"} <= sources
    assert any(s.startswith("nli-") and s.endswith("-en") for s in sources)
    assert any(s.startswith("nli-") and s.endswith("-ko") for s in sources)
    assert {r.lang for r in recs} >= {"en", "de", "ko", "deu", "kor"}
    assert all(len(r.neg) >= 1 and r.pos[0] not in r.neg for r in recs)
    short = list(read_records(out / "short.jsonl", kind="example"))
    assert len(short) == manifest["short_of_negatives"]
    assert sum(g["queries"] for g in manifest["groups"].values()) == manifest["train"] + len(short)
    assert all(g["queries"] <= 25 and g["corpus"] <= 200 for g in manifest["groups"].values())


def test_xquad_split_is_by_article_and_nothing_held_apart_is_trained_on(built, slice_root):
    out, _ = built
    recs = list(read_records(out / "train.jsonl", kind="example"))
    for lang in ("en", "de"):
        paras = read_squad(slice_root / f"xquad/xquad.{lang}.json")
        held = {p.context for p in paras if held_apart(int(p.doc_id.split("-")[0]))}
        held_q = {q for p in paras if held_apart(int(p.doc_id.split("-")[0])) for _, q in p.questions}
        assert held and held_q
        trained = [r for r in recs if r.source == f"xquad-{lang}"]
        assert trained
        for r in trained:
            assert r.query not in held_q
            assert not any(c in t for c in held for t in r.pos + r.neg)  # not even as a negative
        # the evaluation set: the full corpus, only held-apart questions (articles 3 and 7)
        ev = out / "eval" / f"xquad-{lang}"
        assert sum(1 for _ in read_corpus(ev / "corpus.jsonl")) == len(paras)
        assert {q.text for q in read_queries(ev / "queries.jsonl")} == held_q
        qrels = (ev / "qrels/test.tsv").read_text().splitlines()[1:]
        assert {int(line.split("\t")[1].split("-")[0]) for line in qrels} == {3, 7}


def test_tatoeba_held_apart_lines_never_reach_training(built, slice_root):
    out, _ = built
    recs = [r for r in read_records(out / "train.jsonl", kind="example") if r.source == "tatoeba-deu"]
    src = (slice_root / "tatoeba/tatoeba.deu-eng.deu").read_text(encoding="utf-8").splitlines()
    held = (out / "eval/tatoeba/tatoeba.deu-eng.deu").read_text(encoding="utf-8").splitlines()
    assert held == [s.strip() for i, s in enumerate(src) if i % 4 == 3]
    eng = (out / "eval/tatoeba/tatoeba.deu-eng.eng").read_text(encoding="utf-8").splitlines()
    assert len(eng) == len(held) == 10
    assert recs and not ({r.query for r in recs} & set(held)) and not ({r.pos[0] for r in recs} & set(eng))


def test_sts_positives_score_at_least_4_and_nli_keeps_its_contradiction(built, slice_root):
    out, _ = built
    from embforge.data.convert.sts import read_sts

    good = {
        (p.sentence1, p.sentence2) for p in read_sts(slice_root / "sts/stsb_en/sts-train.csv") if p.score >= 4
    }
    recs = list(read_records(out / "train.jsonl", kind="example"))
    sts = [r for r in recs if r.source.startswith("sts-") and r.lang == "en"]
    assert sts and all((r.query, r.pos[0]) in good for r in sts)
    labels = (slice_root / "nli/snli_esnli/labels.dev").read_text().split()
    s1 = (slice_root / "nli/snli_esnli/s1.dev").read_text().splitlines()
    s2 = (slice_root / "nli/snli_esnli/s2.dev").read_text().splitlines()
    contra = {(a.strip(), b.strip()) for a, b, y in zip(s1, s2, labels) if y == "contradiction"}
    nli = [r for r in recs if r.source.startswith("nli-") and r.lang == "en"]
    assert nli and all((r.query, r.neg[0]) in contra for r in nli)


def test_the_mix_is_deterministic(built, slice_root, tmp_path):
    out, _ = built
    build_mix(slice_root, tmp_path, DenseTeacher(_bag), CFG)
    for f in (
        "train.jsonl",
        "short.jsonl",
        "eval/xquad-de/queries.jsonl",
        "eval/tatoeba/tatoeba.kor-eng.eng",
    ):
        assert (tmp_path / f).read_bytes() == (out / f).read_bytes(), f


def test_missing_language_or_folder_names_it(slice_root, tmp_path):
    with pytest.raises(DataError, match=r"xquad\.xx\.json"):
        build_mix(slice_root, tmp_path, DenseTeacher(_bag), MixConfig(xquad_langs=("xx",)))
    with pytest.raises(DataError, match="not a directory"):
        build_mix(tmp_path / "nope", tmp_path, DenseTeacher(_bag), CFG)
    shutil.rmtree(tmp_path)
