"""Property tests: every reader turns ANY byte string into records or an EmbforgeError.

Covers JSONL / .jsonl.gz / parquet training records, BEIR corpus / queries / qrels (and
``load_beir`` on a fuzzed folder), the STS / NLI / SQuAD / Tatoeba converters, the eval
readers (STS, bitext), the pretraining text readers, ``embforge encode``/``search`` input
readers and YAML configs. ``make test`` runs a small budget (helpers.fuzz.FAST examples per
reader), ``make test-slow`` a large one (SLOW).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import strategies as st

from embforge.config import read_yaml
from embforge.data.convert.bitext import read_bitext
from embforge.data.convert.nli import read_nli_lines, read_nli_tsv
from embforge.data.convert.squad import read_squad
from embforge.data.convert.sts import read_sts
from embforge.data.io import count_rows, read_corpus, read_qrels, read_queries, read_records
from embforge.eval.datasets import load_beir, load_bitext, load_sts
from embforge.pretrain.corpus import read_texts
from helpers.fuzz import BUDGETS, byte_files, check_reader, gzipped, parquet_files, tsv_files

RECORD_KEYS = ["query", "positive", "negative", "pos", "neg", "pos_scores", "neg_scores",
               "sentence1", "sentence2", "score", "source", "lang", "id"]
VALID_PAIR = b'{"query": "what is a cat", "positive": "a small animal", "lang": "en"}\n' * 3
VALID_DOC = b'{"_id": "d1", "title": "Cat", "text": "a small animal"}\n{"_id": "d2", "text": "dogs"}\n'
VALID_QUERY = b'{"_id": "q1", "text": "cat?"}\n'
VALID_QRELS = b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"
VALID_SQUAD = (b'{"data": [{"title": "T", "paragraphs": [{"context": "ctx", '
               b'"qas": [{"id": "1", "question": "q?"}]}]}]}')


def _valid_parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"query": ["q1", "q2"], "positive": ["p1", "p2"]}), buf)
    return buf.getvalue()


def _in_file(name: str, consume: Callable[[Path], Any]) -> Callable[[bytes], Any]:
    """A reader of bytes: write them to ``name`` in a fresh folder, then consume the file."""

    def read(raw: bytes) -> Any:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / name
            p.write_bytes(raw)
            return consume(p)

    return read


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", ["train.jsonl", "train.jsonl.gz"])
def test_fuzz_records_jsonl(name: str, budget: int) -> None:
    data = byte_files(RECORD_KEYS, VALID_PAIR)
    if name.endswith(".gz"):
        data = gzipped(data)
    check_reader(_in_file(name, lambda p: (list(read_records(p)), count_rows(p))), data, budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_records_parquet(budget: int) -> None:
    reader = _in_file("train.parquet", lambda p: (list(read_records(p)), count_rows(p)))
    check_reader(reader, parquet_files(_valid_parquet()), budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_beir_corpus_queries_qrels(budget: int) -> None:
    check_reader(_in_file("corpus.jsonl", lambda p: list(read_corpus(p))),
                 byte_files(["_id", "title", "text", "id"], VALID_DOC), budget)
    check_reader(_in_file("queries.jsonl.gz", lambda p: list(read_queries(p))),
                 gzipped(byte_files(["_id", "text"], VALID_QUERY)), budget)
    check_reader(_in_file("test.tsv", lambda p: list(read_qrels(p))), tsv_files(3, VALID_QRELS), budget)


def _beir_folder(files: tuple[bytes, bytes, bytes]) -> Any:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "qrels").mkdir()
        (root / "corpus.jsonl").write_bytes(files[0])
        (root / "queries.jsonl").write_bytes(files[1])
        (root / "qrels" / "test.tsv").write_bytes(files[2])
        return load_beir(root)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_load_beir_folder(budget: int) -> None:
    folder = st.tuples(
        st.one_of(st.just(VALID_DOC), byte_files(["_id", "title", "text"], VALID_DOC)),
        st.one_of(st.just(VALID_QUERY), byte_files(["_id", "text"], VALID_QUERY)),
        st.one_of(st.just(VALID_QRELS), tsv_files(3, VALID_QRELS)),
    )
    check_reader(_beir_folder, folder, budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_sts_converter_and_eval_reader(budget: int) -> None:
    valid_stsb = b"main-news\tMSRvid\t2012test\t0001\t5.000\tA man.\tA man!\n"
    for name in ("sts-test.csv", "korsts.tsv", "sts.csv.gz"):
        data = tsv_files(7, valid_stsb)
        data = gzipped(data) if name.endswith(".gz") else data
        check_reader(_in_file(name, lambda p: list(read_sts(p))), data, budget)
    check_reader(_in_file("sts.tsv", load_sts), tsv_files(7, valid_stsb), budget)
    check_reader(_in_file("sts.jsonl", load_sts),
                 byte_files(["sentence1", "sentence2", "score"], b'{"sentence1":"a","sentence2":"b","score":1}\n'),
                 budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_nli_converters(budget: int) -> None:
    valid = b"sentence1\tsentence2\tgold_label\nA man.\tA person.\tentailment\n"
    check_reader(_in_file("kornli.tsv", lambda p: list(read_nli_tsv(p))), tsv_files(3, valid), budget)

    def three_files(raw: bytes) -> Any:
        with tempfile.TemporaryDirectory() as d:
            parts = (raw.split(b"\x00", 2) + [b"", b""])[:3]
            paths = [os.path.join(d, n) for n in ("s1.txt", "s2.txt", "labels.txt")]
            for p, b in zip(paths, parts):
                Path(p).write_bytes(b)
            return list(read_nli_lines(*paths))

    check_reader(three_files, tsv_files(1, b"a\x00b\x00entailment\n"), budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_squad_and_tatoeba_converters(budget: int) -> None:
    squad_keys = ["data", "title", "paragraphs", "context", "qas", "id", "question"]
    check_reader(_in_file("xquad.de.json", read_squad), byte_files(squad_keys, VALID_SQUAD), budget)

    def bitext(raw: bytes) -> Any:
        with tempfile.TemporaryDirectory() as d:
            a, _, b = raw.partition(b"\x00")
            src, tgt = Path(d) / "tatoeba.deu-eng.deu", Path(d) / "tatoeba.deu-eng.eng"
            src.write_bytes(a)
            tgt.write_bytes(b)
            return list(read_bitext(src, tgt)), load_bitext(src, tgt)

    check_reader(bitext, tsv_files(1, b"Hallo\nWelt\n\x00Hello\nWorld\n"), budget)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", ["corpus.txt", "corpus.jsonl", "xquad.json", "klue-ner.tsv"])
def test_fuzz_pretraining_text_readers(name: str, budget: int) -> None:
    valid = {"corpus.txt": b"one\ntwo\n", "corpus.jsonl": b'{"text": "a"}\n', "xquad.json": VALID_SQUAD,
             "klue-ner.tsv": b"## klue-ner-1\tsome <word:PS> text\n"}[name]
    check_reader(_in_file(name, read_texts),
                 byte_files(["text", "contents", "data", "paragraphs", "context"], valid), budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_cli_input_readers(budget: int) -> None:
    from embforge.cli.encode import read_texts as encode_texts
    from embforge.cli.search import read_query_texts

    check_reader(_in_file("texts.jsonl", encode_texts), byte_files(["text", "_id", "id"], b'{"text":"a"}\n'),
                 budget)
    check_reader(_in_file("texts.txt", encode_texts), byte_files([], b"a\nb\n"), budget)
    check_reader(_in_file("queries.txt", read_query_texts), byte_files([], b"a\nb\n"), budget)


@pytest.mark.parametrize("budget", BUDGETS)
def test_fuzz_yaml_configs(budget: int) -> None:
    from embforge.train.recipes import load_config

    valid = Path(__file__).resolve().parents[3].joinpath("configs").glob("*.yaml")
    sample = next(iter(sorted(valid))).read_bytes()
    yaml_bytes = st.one_of(
        byte_files(["recipe", "model", "loop", "data", "loss"], sample),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.just(b"a: 1\nb:\n  c: .nan\n"),
    )
    check_reader(_in_file("cfg.yaml", read_yaml), yaml_bytes, budget)
    check_reader(_in_file("cfg.yaml", load_config), yaml_bytes, budget)
