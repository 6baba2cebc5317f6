"""Evaluation data: BEIR retrieval directories, STS pair files, line-aligned bitext.

Readers name the file and line of anything malformed (``DataError``).

* BEIR: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` (read with
  :mod:`embforge.data.io`); only queries judged in the split are evaluated.
* STS, format detected from the file:
  STS Benchmark ``sts-*.csv`` (TAB-separated genre, file, year, id, score, s1, s2; extra
  columns ignored), KorSTS ``*.tsv`` (header with ``sentence1``/``sentence2``/``score``),
  stsb_multi_mt ``*.csv`` (``s1,s2,score``, no header), or JSONL ``scored_pair`` records
  (``sentence1``, ``sentence2``, ``score``).
* Bitext: two line-aligned text files (Tatoeba ``tatoeba.xxx-eng.xxx`` / ``.eng``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from embforge.data.convert.sts import read_sts
from embforge.data.formats import ScoredPair
from embforge.data.io import load_qrels, read_corpus, read_queries, read_records, read_text_file
from embforge.errors import DataError

__all__ = ["RetrievalSet", "StsSet", "BitextSet", "load_beir", "load_sts", "load_bitext", "guess_language"]

_LANG_RE = re.compile(r"(?:^|[-_.])([a-z]{2,3})(?:$|[-_.])")


def guess_language(name: str) -> str:
    """A language tag from a data set name (``xquad-de`` -> ``de``, ``stsb-es-dev`` -> ``es``), or ''."""
    skip = {"dev", "test", "train", "sts", "eng", "tsv", "csv", "txt", "jsonl", "mt"}
    for m in _LANG_RE.finditer(name.lower()):
        tag = m.group(1)
        if tag not in skip:
            return tag
    return ""


@dataclass
class RetrievalSet:
    """A retrieval task: corpus, the queries judged in one split, and their qrels."""

    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    language: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class StsSet:
    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    language: str = ""


@dataclass
class BitextSet:
    name: str
    source: list[str]
    target: list[str]
    language: str = ""


def load_beir(
    path: str | Path,
    split: str = "test",
    name: str | None = None,
    language: str | None = None,
    max_queries: int | None = None,
) -> RetrievalSet:
    """Read a BEIR directory; keep the queries judged in ``qrels/<split>.tsv``."""

    root = Path(path)
    for f in ("corpus.jsonl", "queries.jsonl"):
        if not (root / f).exists() and not (root / (f + ".gz")).exists():
            raise DataError(
                f"{root}: no {f}; a BEIR directory holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
            )
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise DataError(
            f"{qrels_path} does not exist; choose a split from: {', '.join(have) or '(none found)'}"
        )
    corpus_file = root / "corpus.jsonl" if (root / "corpus.jsonl").exists() else root / "corpus.jsonl.gz"
    queries_file = root / "queries.jsonl" if (root / "queries.jsonl").exists() else root / "queries.jsonl.gz"
    doc_ids, doc_texts = [], []
    for d in read_corpus(corpus_file):  # duplicate ids: DataError; empty documents kept, counted
        doc_ids.append(d.id)
        doc_texts.append(f"{d.title} {d.text}".strip() if d.title else d.text)
    if not doc_ids:
        raise DataError(f"{corpus_file}: the corpus is empty; a retrieval evaluation needs documents")
    qtext = {q.id: q.text for q in read_queries(queries_file)}  # duplicate ids: DataError
    # a qrel naming an unknown document or query would silently lower every metric: refuse it
    qrels = load_qrels(qrels_path, query_ids=set(qtext), doc_ids=set(doc_ids))
    if not qrels:
        raise DataError(f"{qrels_path}: no judgements; a retrieval evaluation needs qrels lines")
    qids = [q for q in qtext if q in qrels]
    if max_queries is not None:
        qids = qids[:max_queries]
        qrels = {q: qrels[q] for q in qids}
    name = name or root.name
    return RetrievalSet(
        name=name,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        query_ids=qids,
        query_texts=[qtext[q] for q in qids],
        qrels=qrels,
        language=language if language is not None else guess_language(name),
        meta={"path": str(root), "split": split},
    )


def load_sts(path: str | Path, name: str | None = None, language: str | None = None) -> StsSet:
    """Read an STS pair file (format detected; see the module docstring).

    One reader per format in the whole package: tabular files go through
    :func:`embforge.data.convert.sts.read_sts`, JSONL through :func:`embforge.data.io.read_records`.
    """

    p = Path(path)
    if not p.exists():
        raise DataError(f"STS file {p} does not exist")
    if p.name.endswith((".jsonl", ".jsonl.gz", ".json", ".parquet")):
        # kind= makes read_records parse every line as a ScoredPair (or fail on it)
        recs = cast(list[ScoredPair], list(read_records(p, kind=ScoredPair.kind)))
    else:
        recs = list(read_sts(p))
    if not recs:
        raise DataError(f"STS file {p} holds no pairs")
    name = name or p.stem
    return StsSet(
        name,
        [r.sentence1 for r in recs],
        [r.sentence2 for r in recs],
        [float(r.score) for r in recs],
        language if language is not None else guess_language(name),
    )


def load_bitext(
    source: str | Path,
    target: str | Path,
    name: str | None = None,
    language: str | None = None,
    max_pairs: int | None = None,
) -> BitextSet:
    """Two line-aligned files; line i of ``source`` translates line i of ``target``."""
    src = read_text_file(source).splitlines()  # DataError on a missing, bad-gzip or non-UTF-8 file
    tgt = read_text_file(target).splitlines()
    if len(src) != len(tgt):
        raise DataError(
            f"bitext files are not line-aligned: {source} has {len(src)} lines, {target} has {len(tgt)}"
        )
    if not src:
        raise DataError(f"bitext file {source} is empty; it needs one sentence per line")
    if max_pairs is not None:
        src, tgt = src[:max_pairs], tgt[:max_pairs]
    name = name or Path(source).name
    if language is None:
        language = Path(source).suffix.lstrip(".")
    return BitextSet(name, src, tgt, language)
