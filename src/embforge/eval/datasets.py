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

A set's language comes from the data: the records' ``lang`` fields (BEIR rows: ``lang`` or
``metadata.lang``; ``xquad``/``squad`` conversions and the bundled demo sets write it), unless
given (``--lang``, ``language=``). Only when neither says anything is a tag at the end of the
set's name used (``xquad-de`` -> ``de``), with a warning; bitext takes the source file's
extension (Tatoeba's ``.kor``). :func:`set_language` holds the order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from embforge.data.convert.sts import read_sts
from embforge.data.formats import ScoredPair
from embforge.data.io import load_qrels, read_corpus, read_queries, read_records, read_text_file
from embforge.errors import DataError

__all__ = [
    "RetrievalSet",
    "StsSet",
    "BitextSet",
    "load_beir",
    "load_sts",
    "load_bitext",
    "data_language",
    "set_language",
    "guess_language",
]

logger = logging.getLogger("embforge")
_LANG_RE = re.compile(r"(?:^|[-_.])([a-z]{2,3})(?:$|[-_.])")


def guess_language(name: str) -> str:
    """A language tag from a data set name (``xquad-de`` -> ``de``, ``stsb-es-dev`` -> ``es``), or ''.

    Only the last resort of :func:`set_language`: a name is no language (``papers_beir_ne`` is
    not Nepali), so the data's ``lang`` fields and an explicit language come first."""
    skip = {"dev", "test", "train", "sts", "eng", "tsv", "csv", "txt", "jsonl", "mt"}
    for m in _LANG_RE.finditer(name.lower()):
        tag = m.group(1)
        if tag not in skip:
            return tag
    return ""


def data_language(query_langs: Iterable[str], doc_langs: Iterable[str] = ()) -> str:
    """The language the records say they are in: their one ``lang`` tag (``de``), ``de-en`` when
    the queries are in one language and the documents in another (cross-lingual), several tags
    joined with ``+`` (``de+en``) for a mixed set, '' when no record has one."""
    q = sorted({x for x in query_langs if x})
    d = sorted({x for x in doc_langs if x})
    if len(q) == 1 and len(d) == 1 and q != d:
        return f"{q[0]}-{d[0]}"
    return "+".join(q or d)


def set_language(name: str, given: str | None, from_data: str) -> tuple[str, str]:
    """(language, where it came from) of a data set, in this order: ``given`` (``--lang`` or the
    ``language=`` argument) -> "given"; the records' ``lang`` fields -> "data"; the last resort,
    a tag at the end of the set's name (``xquad-de``) -> "name" (a warning says so); else ('', '')."""
    if given:
        return given, "given"
    if from_data:
        return from_data, "data"
    guess = guess_language(name)
    if guess:
        logger.warning(
            "%s: no 'lang' field in the data, so the language %r is guessed from the name; "
            "add a 'lang' field to the records or pass --lang (language=) if that is wrong",
            name,
            guess,
        )
        return guess, "name"
    return "", ""


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
    meta: dict = field(default_factory=dict)  # path, split, language_source ("given", "data", "name")


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
    if not root.is_dir():
        what = "is a file, not a BEIR folder" if root.exists() else "does not exist"
        raise DataError(
            f"BEIR folder {str(root)!r} {what}; pass the folder holding corpus.jsonl, queries.jsonl, qrels/"
        )
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
    doc_ids, doc_texts, doc_langs = [], [], set()
    for d in read_corpus(corpus_file):  # duplicate ids: DataError; empty documents kept, counted
        doc_ids.append(d.id)
        doc_texts.append(f"{d.title} {d.text}".strip() if d.title else d.text)
        doc_langs.add(d.lang)
    if not doc_ids:
        raise DataError(f"{corpus_file}: the corpus is empty; a retrieval evaluation needs documents")
    qrows = {q.id: q for q in read_queries(queries_file)}  # duplicate ids: DataError
    qtext = {k: q.text for k, q in qrows.items()}
    # a qrel naming an unknown document or query would silently lower every metric: refuse it
    qrels = load_qrels(qrels_path, query_ids=set(qtext), doc_ids=set(doc_ids))
    if not qrels:
        raise DataError(f"{qrels_path}: no judgements; a retrieval evaluation needs qrels lines")
    qids = [q for q in qtext if q in qrels]
    if max_queries is not None:
        qids = qids[:max_queries]
        qrels = {q: qrels[q] for q in qids}
    name = name or root.name
    lang, source = set_language(name, language, data_language((qrows[q].lang for q in qids), doc_langs))
    return RetrievalSet(
        name=name,
        doc_ids=doc_ids,
        doc_texts=doc_texts,
        query_ids=qids,
        query_texts=[qtext[q] for q in qids],
        qrels=qrels,
        language=lang,
        meta={"path": str(root), "split": split, "language_source": source},
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
    lang, _source = set_language(name, language, data_language(r.lang for r in recs))
    return StsSet(name, [r.sentence1 for r in recs], [r.sentence2 for r in recs], [float(r.score) for r in recs], lang)


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
