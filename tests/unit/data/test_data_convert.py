"""Converters on the real files of shared/data give the documented counts; bad rows name file:line."""

from __future__ import annotations

import json

import pytest

from embforge.data import BadLines, load_qrels, read_corpus, read_queries, read_records
from embforge.data.convert.bitext import find_tatoeba_pairs, read_bitext
from embforge.data.convert.nli import NliStats, nli_triples, read_nli_lines, read_nli_tsv
from embforge.data.convert.squad import convert_xquad, read_squad, squad_to_beir
from embforge.data.convert.sts import detect_sts_format, read_sts
from embforge.errors import DataError
from helpers.paths import SHARED_DATA

DATA = SHARED_DATA
XQUAD_LANGS = "ar de el en es hi ro ru th tr vi zh".split()


def test_xquad_every_language_240_paragraphs_1190_questions():
    for lg in XQUAD_LANGS:
        paras = read_squad(DATA / f"xquad/xquad.{lg}.json")
        docs, queries, qrels = squad_to_beir(paras)
        assert (len(docs), len(queries), len(qrels)) == (240, 1190, 1190), lg
        assert len({q.id for q in queries}) == 1190


def test_xquad_written_sets_and_cross_lingual_alignment(tmp_path):
    summary = convert_xquad(DATA / "xquad", tmp_path, ["en", "de"], [("de", "en")], pairs=True)
    assert summary["en"] == {"docs": 240, "queries": 1190, "qrels": 1190, "pairs": 1190}
    assert summary["de-en"] == {"docs": 240, "queries": 1190, "qrels": 1190}
    en_docs = {d.id: d.text for d in read_corpus(tmp_path / "en/corpus.jsonl")}
    x_docs = {d.id: d.text for d in read_corpus(tmp_path / "de-en/corpus.jsonl")}
    de_q = {q.id: q.text for q in read_queries(tmp_path / "de/queries.jsonl")}
    x_q = {q.id: q.text for q in read_queries(tmp_path / "de-en/queries.jsonl")}
    assert x_docs == en_docs and x_q == de_q  # German queries, English corpus
    qrels = load_qrels(tmp_path / "de-en/qrels/test.tsv", set(x_q), set(x_docs))
    assert qrels == load_qrels(tmp_path / "en/qrels/test.tsv")
    # the first English question's paragraph contains its answer
    qid = "56beb4343aeaaa14008c925b"
    assert "Panthers" in en_docs[next(iter(qrels[qid]))]
    pair = next(read_records(tmp_path / "en/pairs.jsonl", kind="pair"))
    assert pair.lang == "en" and pair.source == "xquad-en"


def test_xquad_misaligned_files_are_refused(tmp_path):
    en = read_squad(DATA / "xquad/xquad.en.json")
    with pytest.raises(DataError, match="not aligned"):
        squad_to_beir(en, en[1:] + en[:1], where="x")


@pytest.mark.parametrize(
    "path, fmt, n",
    [
        ("sts/stsb_en/sts-train.csv", "stsb", 5749),
        ("sts/stsb_en/sts-dev.csv", "stsb", 1500),
        ("sts/korsts/sts-train.tsv", "korsts", 5749),
        ("sts/korsts/sts-dev.tsv", "korsts", 1500),
        ("sts/stsb_multi_mt/stsb-de-train.csv", "csv", 5749),
        ("sts/stsb_multi_mt/stsb-zh-dev.csv", "csv", 1500),
    ],
)
def test_sts_counts(path, fmt, n):
    assert detect_sts_format(DATA / path) == fmt
    recs = list(read_sts(DATA / path, lang="xx"))
    assert len(recs) == n
    assert all(0.0 <= r.score <= 5.0 for r in recs)


def test_stsb_extra_columns_are_dropped_and_quotes_kept():
    recs = {r.id: r for r in read_sts(DATA / "sts/stsb_en/sts-train.csv")}
    first = recs["1"]
    assert (first.sentence1, first.sentence2, first.score) == (
        "A plane is taking off.",
        "An air plane is taking off.",
        5.0,
    )
    # a 9-column headlines row keeps only the sentences (not the 'Europe Media Monitor' columns)
    assert not any("Europe Media Monitor" in r.sentence2 for r in recs.values())
    assert any('"' in r.sentence1 for r in recs.values())  # QUOTE_NONE keeps bare quotes as text


def test_sts_bad_score_names_line_and_skip_bad(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("a,b,4.0\nc,d,high\ne,f,7\ng,h,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"s\.csv:2: STS score 'high' is not a number in \[0, 5\]"):
        list(read_sts(p))
    with BadLines(tmp_path / "bad.jsonl") as bad:
        assert [r.sentence1 for r in read_sts(p, bad=bad)] == ["a", "g"]
    assert bad.count == 2
    assert [json.loads(x)["line"] for x in (tmp_path / "bad.jsonl").read_text().splitlines()] == [2, 3]


def test_kornli_gives_2500_triples():
    stats = NliStats()
    triples = []
    for f in ("xnli.dev.ko.tsv", "xnli.test.ko.tsv"):
        triples += nli_triples(read_nli_tsv(DATA / "nli/kornli_xnli_ko" / f), lang="ko", stats=stats)
    assert len(triples) == 2500 == stats.premises
    t = triples[0]
    assert t.query == '그리고 그가 말했다, "엄마, 저 왔어요."'
    assert (t.positive, t.negative) == ("그는 엄마에게 집에 갔다고 말했다.", "그는 한마디도 하지 않았다.")


def test_snli_line_files_give_documented_triples():
    d = DATA / "nli/snli_esnli"
    counts = {}
    for s in ("dev", "test"):
        st = NliStats()
        counts[s] = len(
            list(nli_triples(read_nli_lines(d / f"s1.{s}", d / f"s2.{s}", d / f"labels.{s}"), stats=st))
        )
        assert st.premises == {"dev": 3319, "test": 3323}[s]
    assert counts == {"dev": 2943, "test": 2921}  # premises with both an entailment and a contradiction


def test_unknown_nli_label_names_file_and_line(tmp_path):
    p = tmp_path / "n.tsv"
    p.write_text("sentence1\tsentence2\tgold_label\na\tb\tentailment\na\tc\tcontradicton\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"n\.tsv:3: unknown NLI label 'contradicton'"):
        list(read_nli_tsv(p))
    with BadLines(tmp_path / "bad.jsonl") as bad:
        assert len(list(read_nli_tsv(p, bad))) == 1
    assert bad.count == 1


def test_nli_line_files_of_unequal_length(tmp_path):
    (tmp_path / "s1").write_text("a\nb\n")
    (tmp_path / "s2").write_text("x\n")
    (tmp_path / "l").write_text("entailment\nneutral\n")
    with pytest.raises(DataError, match=r"s2:2: file ends before its line-aligned partners"):
        list(read_nli_lines(tmp_path / "s1", tmp_path / "s2", tmp_path / "l"))


def test_tatoeba_112_pairs_88877_sentences():
    found = find_tatoeba_pairs(DATA / "tatoeba")
    assert len(found) == 112
    total = sum(sum(1 for _ in read_bitext(src, eng)) for _, src, eng in found)
    assert total == 88_877
    kor = dict((c, (s, e)) for c, s, e in found)["kor"]
    pairs = list(read_bitext(*kor, lang="kor-eng"))
    assert len(pairs) == 1000 and pairs[0].positive == "I hate her hat."


def test_bitext_mismatch_names_short_file(tmp_path):
    (tmp_path / "a").write_text("x\ny\n")
    (tmp_path / "b").write_text("X\n")
    with pytest.raises(DataError, match=r"b:2: file ends before"):
        list(read_bitext(tmp_path / "a", tmp_path / "b"))
