"""Contrastive training examples: read, check (before any step) and turn into texts.

Reads the record kinds of ``embforge.data.formats`` (pair, triple, example with
teacher scores, scored pair) through ``embforge.data.io`` readers (JSONL, .gz,
parquet), plus plain ``.txt`` files (one sentence per line, for SimCSE
unsupervised). Each record belongs to the source ``<record source or file
name>[/<lang>]``, so every language subset is its own source for the sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embforge.data.formats import parse_record
from embforge.data.io import iter_rows, open_text
from embforge.errors import DataError

__all__ = ["TrainExample", "read_examples", "check_examples", "group_texts", "sources_of"]


@dataclass(frozen=True)
class TrainExample:
    query: str
    pos: list[str]
    neg: list[str]
    pos_scores: list[float] | None
    neg_scores: list[float] | None
    source: str
    where: str


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".gz", ".jsonl", ".json", ".parquet", ".txt"):
        name = name.removesuffix(ext)
    return name


def read_examples(files: Sequence[str]) -> list[TrainExample]:
    """Read every file into ``TrainExample`` s (errors name file and line)."""
    if not files:
        raise DataError("data.train_files is empty; give at least one JSONL/parquet/txt file")
    out: list[TrainExample] = []
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"training file {f!r} does not exist; fix data.train_files")
        before = len(out)
        if str(f).endswith(".txt"):
            with open_text(f) as fh:  # bad UTF-8, over-long lines: DataError naming file:line
                for i, line in enumerate(fh, 1):
                    t = line.strip()
                    if t:
                        out.append(TrainExample(t, [t], [], None, None, _stem(f), f"{f}:{i}"))
        else:
            for lineno, obj in iter_rows(f):
                where = f"{f}:{lineno}"
                ex = parse_record(obj, where).to_example()
                src = ex.source or _stem(f)
                if ex.lang:
                    src = f"{src}/{ex.lang}"
                out.append(
                    TrainExample(
                        ex.query, list(ex.pos), list(ex.neg), ex.pos_scores, ex.neg_scores, src, where
                    )
                )
        if len(out) == before:
            raise DataError(f"training file {f!r} holds no records; every source needs data")
    return out


def check_examples(examples: Sequence[TrainExample], num_negatives: int, need_teacher: bool) -> None:
    """Fail before training when an example lacks negatives or teacher scores (lists the first ones)."""
    few = [e for e in examples if len(e.neg) < num_negatives]
    if few:
        shown = "; ".join(f"{e.where} has {len(e.neg)}" for e in few[:5])
        raise DataError(
            f"{len(few)} example(s) have fewer than data.num_negatives={num_negatives} hard "
            f"negatives ({shown}); lower data.num_negatives, or mine with `embforge mine --negatives "
            f"{num_negatives} --short separate` (queries with fewer go to OUTPUT.short.jsonl)"
        )
    if need_teacher:
        bad = [e for e in examples if e.pos_scores is None or (num_negatives and e.neg_scores is None)]
        if bad:
            shown = "; ".join(e.where for e in bad[:5])
            raise DataError(
                f"the distill loss needs teacher scores (pos_scores, neg_scores) on every "
                f"example; {len(bad)} lack them ({shown}); mine with `embforge mine` or use "
                f"loss.name=infonce"
            )


def sources_of(examples: Sequence[TrainExample]) -> dict[str, list[int]]:
    """Source name -> example indices."""
    out: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        out.setdefault(e.source, []).append(i)
    return out


def group_texts(
    examples: Sequence[TrainExample],
    idx: Sequence[int] | np.ndarray,
    num_negatives: int,
    seed: int,
    step: int,
    need_teacher: bool = False,
) -> tuple[list[str], list[str], list[list[float]] | None]:
    """Queries, grouped documents (positive then ``num_negatives`` negatives per query) and
    teacher scores (Q, 1+N) for the examples ``idx``. When an example has several
    positives or more negatives than needed, a seeded draw per (seed, step, example) picks
    them, so a resumed run draws exactly the same texts.
    """
    queries, docs, teacher = [], [], []
    for i in idx:
        e = examples[int(i)]
        rng = np.random.default_rng([seed, step, int(i)])
        p = int(rng.integers(len(e.pos))) if len(e.pos) > 1 else 0
        negs = (
            rng.choice(len(e.neg), size=num_negatives, replace=False).tolist()
            if len(e.neg) > num_negatives
            else list(range(num_negatives))
        )
        queries.append(e.query)
        docs.append(e.pos[p])
        docs.extend(e.neg[j] for j in negs)
        if need_teacher:
            # need_teacher: the check above found scores on every example (neg_scores when negs exist)
            teacher.append([e.pos_scores[p]] + [e.neg_scores[j] for j in negs])  # type: ignore[index]  # see above
    return queries, docs, (teacher if need_teacher else None)
