"""SQuAD-format QA (XQuAD) -> BEIR retrieval: question -> the paragraph that answers it.

Document ids are positional (``"<article>-<paragraph>"``, e.g. ``"3-0"``) and query ids
are the SQuAD question ids, so for XQuAD (same articles, paragraphs and question ids in
every language) ids are aligned across languages: queries of language X against the
corpus of language Y is a cross-lingual task with the same qrels. Alignment is checked
(same question ids in each paragraph) before a cross-lingual set is written.

SQuAD JSON is one document (``{"data": [{"title", "paragraphs": [{"context", "qas":
[{"id", "question", ...}]}]}]}``), so a file is parsed whole; XQuAD files are 1-2 MB.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from embforge.data.formats import CorpusDoc, Pair, Qrel, Query
from embforge.data.io import loads_json, read_text_file, write_beir, write_jsonl
from embforge.errors import DataError

T = TypeVar("T")

__all__ = [
    "SquadParagraph",
    "read_squad",
    "squad_to_beir",
    "squad_pairs",
    "find_xquad_files",
    "convert_xquad",
]


@dataclass(frozen=True)
class SquadParagraph:
    doc_id: str
    title: str
    context: str
    questions: tuple[tuple[str, str], ...]  # (question id, question text)


def _get(obj: object, key: str, typ: type[T], where: str) -> T:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing {key!r}; expected SQuAD v1.1 layout")
    v = obj[key]
    if not isinstance(v, typ):
        raise DataError(f"{where}.{key}: expected {typ.__name__}, got {type(v).__name__}")
    return v


def read_squad(path: str | os.PathLike) -> list[SquadParagraph]:
    """Parse and validate a SQuAD-format file into paragraphs (in file order)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; check the path")
    root = loads_json(read_text_file(p), f"{p}")  # DataError on bad bytes/JSON; expected SQuAD v1.1
    out: list[SquadParagraph] = []
    seen: set[str] = set()
    for a, art in enumerate(_get(root, "data", list, str(p))):
        wa = f"{p}: data[{a}]"
        title = art.get("title", "") if isinstance(art, dict) else ""
        for j, para in enumerate(_get(art, "paragraphs", list, wa)):
            wp = f"{wa}.paragraphs[{j}]"
            context = str(_get(para, "context", str, wp))
            if not context.strip():
                raise DataError(f"{wp}: empty context")
            qs = []
            for k, qa in enumerate(_get(para, "qas", list, wp)):
                wq = f"{wp}.qas[{k}]"
                qid, question = str(_get(qa, "id", str, wq)), str(_get(qa, "question", str, wq))
                if not question.strip():
                    raise DataError(f"{wq}: empty question (id {qid!r})")
                if qid in seen:
                    raise DataError(f"{wq}: duplicate question id {qid!r}; ids must be unique")
                seen.add(qid)
                qs.append((qid, question.strip()))
            out.append(SquadParagraph(f"{a}-{j}", str(title), context, tuple(qs)))
    return out


def squad_to_beir(
    query_paras: list[SquadParagraph],
    doc_paras: list[SquadParagraph] | None = None,
    where: str = "",
    lang: str = "",
    doc_lang: str | None = None,
) -> tuple[list[CorpusDoc], list[Query], list[Qrel]]:
    """BEIR corpus/queries/qrels; with ``doc_paras`` the corpus comes from another language.

    ``lang`` (queries) and ``doc_lang`` (documents; default ``lang``) are written into the rows,
    so the data carries its language (evaluation reads it from there).

    Raises:
        DataError: if the two files' paragraphs are not aligned (different question ids).
    """
    docs_from = query_paras if doc_paras is None else doc_paras
    if doc_paras is not None:
        if len(doc_paras) != len(query_paras):
            raise DataError(
                f"{where}: {len(query_paras)} vs {len(doc_paras)} paragraphs; cross-lingual needs aligned files"
            )
        for qp, dp in zip(query_paras, doc_paras):
            if qp.doc_id != dp.doc_id or [q for q, _ in qp.questions] != [q for q, _ in dp.questions]:
                raise DataError(
                    f"{where}: paragraph {qp.doc_id} has different question ids; files are not aligned"
                )
    dl = lang if doc_lang is None else doc_lang
    docs = [CorpusDoc(p.doc_id, p.context, p.title, dl) for p in docs_from]
    queries = [Query(qid, text, lang) for p in query_paras for qid, text in p.questions]
    qrels = [Qrel(qid, p.doc_id, 1) for p in query_paras for qid, _ in p.questions]
    return docs, queries, qrels


def squad_pairs(paras: list[SquadParagraph], lang: str = "", source: str = "") -> Iterator[Pair]:
    """(question, paragraph) training pairs."""
    for p in paras:
        for qid, text in p.questions:
            yield Pair(text, p.context, source=source, lang=lang, id=qid)


_XQUAD = re.compile(r"^xquad\.([a-z]{2,3})\.json$")


def find_xquad_files(input_dir: str | os.PathLike) -> dict[str, Path]:
    """language -> ``xquad.<lang>.json`` in a folder."""
    d = Path(input_dir)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory; give the folder holding xquad.<lang>.json files")
    files = {m.group(1): f for f in sorted(d.iterdir()) if (m := _XQUAD.match(f.name))}
    if not files:
        raise DataError(f"{d}: no xquad.<lang>.json files found")
    return files


def convert_xquad(
    input_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    langs: list[str] | None = None,
    cross: list[tuple[str, str]] | None = None,
    pairs: bool = False,
) -> dict[str, dict[str, int]]:
    """Write ``<out>/<lang>/`` BEIR sets, ``<out>/<qlang>-<dlang>/`` cross-lingual sets and,
    with ``pairs``, ``<out>/<lang>/pairs.jsonl`` training pairs. Returns counts per set."""
    files = find_xquad_files(input_dir)
    wanted = sorted(set(langs or files) | {x for c in cross or [] for x in c})
    missing = [lg for lg in wanted if lg not in files]
    if missing:
        raise DataError(f"{input_dir}: no xquad file for {missing}; available: {', '.join(sorted(files))}")
    paras = {lg: read_squad(files[lg]) for lg in wanted}
    out = Path(out_dir)
    summary: dict[str, dict[str, int]] = {}
    for lg in sorted(langs or files):
        docs, queries, qrels = squad_to_beir(paras[lg], lang=lg)
        summary[lg] = write_beir(out / lg, docs, queries, qrels)
        if pairs:
            summary[lg]["pairs"] = write_jsonl(
                out / lg / "pairs.jsonl", squad_pairs(paras[lg], lg, f"xquad-{lg}")
            )
    for ql, dl in cross or []:
        docs, queries, qrels = squad_to_beir(
            paras[ql], paras[dl], where=f"{files[ql]} vs {files[dl]}", lang=ql, doc_lang=dl
        )
        summary[f"{ql}-{dl}"] = write_beir(out / f"{ql}-{dl}", docs, queries, qrels)
    return summary
