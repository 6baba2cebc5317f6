"""Training data of the NV-Embed recipe: sources -> examples with negatives -> one-source batches.

A *source* is one data set with its own instruction (NV-Embed prefixes each
task's queries with its own task description). Formats, read with the
converters of :mod:`embforge.data`:

- ``records``: JSONL / parquet training records (pair, scored_pair, triple, example);
- ``xquad``:   a SQuAD-format file; (question, paragraph) pairs, and the other
  paragraphs of the same article as hard negatives;
- ``sts``:     an STS file; pairs with ``score >= min_score`` become positives;
- ``nli``:     KorNLI TSV (``path``) or SNLI line files (``path`` = the folder +
  ``split``); (premise, entailment) positive, contradiction hard negative.

Every example gets exactly ``negatives`` negatives: its own hard negatives first,
then random documents of the same source (seeded). With in-batch negatives off
(NV-Embed stage 2) these are the only negatives a query sees, so they are
required there. Batches come from :class:`embforge.data.samplers.SourceBatchSampler`:
every batch holds examples of one source only (one instruction, and no false
in-batch negatives across tasks).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from embforge.data.convert.nli import nli_triples, read_nli_lines, read_nli_tsv
from embforge.data.convert.squad import read_squad
from embforge.data.convert.sts import read_sts
from embforge.data.formats import ScoredPair
from embforge.data.io import read_records
from embforge.errors import DataError

__all__ = ["SourceConfig", "Example", "TrainBatch", "load_source", "add_negatives"]


@dataclass
class SourceConfig:
    """One training data source.

    Attributes:
        name: label for logs (default: the file name).
        format: records | xquad | sts | nli.
        path: the file (nli with SNLI line files: their folder).
        instruction: task description put in front of this source's queries ("" = none).
        symmetric: also put the instruction in front of the documents (STS-style tasks
            where both sides are the same kind of text); default False.
        min_score: sts only: keep pairs with score >= this (NV-Embed, Lee et al. 2024: 4 on 0-5).
        split: nli with SNLI line files: dev or test.
        limit: keep at most this many examples (None = all).
        skip: drop the first ``skip`` examples (e.g. hold out the start of a file).
    """

    format: Literal["records", "xquad", "sts", "nli"] = "records"
    path: str = ""
    name: str = ""
    instruction: str = ""
    symmetric: bool = False
    min_score: float = 4.0
    split: str = "dev"
    limit: int | None = None
    skip: int = 0

    def validate(self) -> list[str]:
        errs = []
        if not self.path:
            errs.append("path: required (the data file or folder)")
        if self.limit is not None and self.limit < 1:
            errs.append(f"limit: must be >= 1 or null, got {self.limit}")
        if self.skip < 0:
            errs.append(f"skip: must be >= 0, got {self.skip}")
        return errs

    @property
    def label(self) -> str:
        return self.name or Path(self.path).name


@dataclass
class Example:
    """One query with its positive and negatives (texts, no instruction yet)."""

    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)


@dataclass
class TrainBatch:
    """Q queries and Q*G documents grouped per query (positive first), all of one source."""

    source: str
    queries: list[str]
    documents: list[str]
    group_size: int
    instruction: str = ""
    symmetric: bool = False


def _xquad(cfg: SourceConfig) -> list[Example]:
    paras = read_squad(cfg.path)
    by_title: dict[str, list[str]] = {}
    for p in paras:
        by_title.setdefault(p.title, []).append(p.context)
    out: list[Example] = []
    for p in paras:
        hard = [c for c in by_title[p.title] if c != p.context]
        out.extend(Example(q, p.context, list(hard)) for _, q in p.questions)
    return out


def _sts(cfg: SourceConfig) -> list[Example]:
    return [Example(r.sentence1, r.sentence2) for r in read_sts(cfg.path) if r.score >= cfg.min_score]


def _nli(cfg: SourceConfig) -> list[Example]:
    p = Path(cfg.path)
    if p.is_dir():
        rows = read_nli_lines(p / f"s1.{cfg.split}", p / f"s2.{cfg.split}", p / f"labels.{cfg.split}")
    else:
        rows = read_nli_tsv(p)
    return [Example(t.query, t.positive, [t.negative]) for t in nli_triples(rows)]


def _records(cfg: SourceConfig) -> list[Example]:
    out: list[Example] = []
    for rec in read_records(cfg.path):
        if isinstance(rec, ScoredPair) and rec.score < cfg.min_score:
            continue
        ex = rec.to_example()
        out.extend(Example(ex.query, pos, list(ex.neg)) for pos in ex.pos[:1])
    return out


_READERS = {"records": _records, "xquad": _xquad, "sts": _sts, "nli": _nli}


def load_source(cfg: SourceConfig) -> list[Example]:
    """Read a source into examples (after ``skip`` / ``limit``); errors name the file."""
    if not Path(cfg.path).exists():
        raise DataError(f"data source {cfg.label!r}: {cfg.path} does not exist; fix its path in the config")
    exs = _READERS[cfg.format](cfg)[cfg.skip :]
    if cfg.limit is not None:
        exs = exs[: cfg.limit]
    if not exs:
        raise DataError(
            f"data source {cfg.label!r} ({cfg.path}) has no examples after filtering "
            f"(format={cfg.format}, skip={cfg.skip}, limit={cfg.limit}, min_score={cfg.min_score}); "
            "check the path, format and filters"
        )
    return exs


def add_negatives(examples: list[Example], k: int, seed: int) -> list[Example]:
    """Each example with exactly ``k`` negatives: its own hard ones first, then random same-source documents."""
    rng = random.Random(seed)
    pool = sorted({e.positive for e in examples} | {n for e in examples for n in e.negatives})
    out = []
    for e in examples:
        negs = list(dict.fromkeys(n for n in e.negatives if n != e.positive))
        rng.shuffle(negs)
        negs = negs[:k]
        if len(negs) < k:
            if len(pool) <= k:
                raise DataError(
                    f"cannot draw {k} negatives per query from a source with {len(pool)} distinct documents; "
                    "lower stage negatives or add data"
                )
            have = set(negs) | {e.positive}
            while len(negs) < k:
                cand = pool[rng.randrange(len(pool))]
                if cand not in have:
                    negs.append(cand)
                    have.add(cand)
        out.append(Example(e.query, e.positive, negs))
    return out
