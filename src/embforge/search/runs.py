"""Run files: TREC (``qid Q0 docid rank score tag``) and JSON (pytrec_eval ``{qid: {docid: score}}``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from embforge.atomic import atomic_write_text
from embforge.errors import DataError
from embforge.types import Hits

__all__ = ["RUN_FORMATS", "write_run", "run_format"]

RUN_FORMATS = ("trec", "json")


def run_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".trec", ".txt", ".run"):
        return "trec"
    if suffix == ".json":
        return "json"
    raise DataError(
        f"run file {str(path)!r}: unknown extension {suffix!r}; use .trec (TREC) or .json (pytrec_eval)"
    )


def write_run(path: str | os.PathLike, query_ids: Sequence[str], hits: Hits, tag: str = "embforge") -> Path:
    """Write ``hits`` for ``query_ids`` as TREC or JSON (by extension), atomically."""
    path = Path(path)
    fmt = run_format(path)
    if len(query_ids) != len(hits.ids):
        raise DataError(f"{len(query_ids)} query ids for {len(hits.ids)} result lists")
    if fmt == "trec":
        lines = [
            f"{q} Q0 {d} {rank} {s:.6f} {tag}"
            for q, ids, scores in zip(query_ids, hits.ids, hits.scores)
            for rank, (d, s) in enumerate(zip(ids, scores), 1)
        ]
        text = "\n".join(lines) + ("\n" if lines else "")
    else:
        text = json.dumps(hits.to_run(list(query_ids)), indent=1)
    return atomic_write_text(path, text)
