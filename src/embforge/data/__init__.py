"""Training and retrieval data: record formats, streaming readers, converters, mining, filtering.

Submodules:
    formats: typed records (Pair, ScoredPair, Triple, Example; BEIR CorpusDoc, Query, Qrel).
    io: streaming readers (JSONL, JSONL.gz, parquet, BEIR) and atomic writers; BadLines.
    convert: converters for public datasets (xquad, STS, NLI, Tatoeba).
    mining: hard-negative mining with TopK-PercPos false-negative filtering.
    filtering: consistency filtering of pairs with a small embedding model.
    dedup: exact-duplicate removal, streaming and hash-based.
    bundled: the small BEIR-layout sets bundled in resources/demo (demo, quickstart, tiny tokenizers).
    samplers: batch samplers (owned by the training issue).
"""

from __future__ import annotations

from embforge.data.formats import (
    KINDS,
    CorpusDoc,
    Example,
    Pair,
    Qrel,
    Query,
    Record,
    ScoredPair,
    Triple,
    detect_kind,
    parse_record,
)
from embforge.data.io import (
    BadLines,
    atomic_write,
    count_rows,
    iter_rows,
    load_qrels,
    open_text,
    read_corpus,
    read_qrels,
    read_queries,
    read_records,
    write_beir,
    write_jsonl,
)

__all__ = [
    "KINDS",
    "CorpusDoc",
    "Example",
    "Pair",
    "Qrel",
    "Query",
    "Record",
    "ScoredPair",
    "Triple",
    "detect_kind",
    "parse_record",
    "BadLines",
    "atomic_write",
    "count_rows",
    "iter_rows",
    "load_qrels",
    "open_text",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_records",
    "write_beir",
    "write_jsonl",
]
