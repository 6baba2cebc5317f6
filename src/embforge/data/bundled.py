"""The small retrieval sets bundled with the package (``resources/demo``), read without a model.

XQuAD paragraphs and questions (Artetxe et al., 2020, "On the Cross-lingual Transferability of
Monolingual Representations"; CC BY-SA 4.0, see ``resources/demo/ATTRIBUTION.txt``) in the BEIR
layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``. The demo, the quickstart and
the tiny test tokenizers read them from here, so nothing below ``data`` needs a model.

Example:
    >>> docs, queries, qrels = load_demo_corpus("xquad-en")
    >>> sorted(docs[0]) == ["_id", "lang", "text", "title"] and all(q["_id"] in qrels for q in queries)
    True
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DEMO_ROOT", "demo_dir", "load_demo_corpus"]

DEMO_ROOT = Path(__file__).parent.parent / "resources" / "demo"


def demo_dir(name: str = "xquad-en") -> Path:
    """The folder of one bundled set, e.g. ``xquad-en``, ``xquad-de``, ``xquad-es``."""
    return DEMO_ROOT / name


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def load_demo_corpus(
    name: str = "xquad-en", split: str = "test"
) -> tuple[list[dict], list[dict], dict[str, dict[str, int]]]:
    """(docs [{_id, title, text}], queries [{_id, text}] with a judgement, qrels {qid: {docid: rel}})."""
    root = demo_dir(name)
    docs = _jsonl(root / "corpus.jsonl")
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        q, d, r = line.split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    queries = [q for q in _jsonl(root / "queries.jsonl") if q["_id"] in qrels]
    return docs, queries, qrels
