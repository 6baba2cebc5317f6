"""NLI converters: KorNLI/XNLI TSV and SNLI line files -> (anchor, entailment, contradiction).

Every premise that has at least one entailment and one contradiction hypothesis gives
triples (SimCSE's supervised setup: the contradiction is the hard negative).
``pairing="first"`` (default) makes one triple per premise from its first entailment and
first contradiction; ``"zip"`` pairs them up in order (min of the two counts);
``"all"`` makes every combination.

Labels: ``entailment``, ``neutral``, ``contradiction``; SNLI's ``-`` (no gold label) is
counted and skipped; anything else is an error naming the file and line.

Premises are grouped in memory (one dict entry per premise), so the input must fit in
memory; the NLI sets in use (SNLI, MNLI, KorNLI: <= 1M pairs) do.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from embforge.data.convert.tabular import fail_or_skip, iter_delimited
from embforge.data.formats import Triple
from embforge.data.io import BadLines, open_text
from embforge.errors import DataError

__all__ = ["LABELS", "PAIRINGS", "NliStats", "read_nli_tsv", "read_nli_lines", "nli_triples"]

LABELS = ("entailment", "neutral", "contradiction")
PAIRINGS = ("first", "zip", "all")
NO_GOLD = "-"


@dataclass
class NliStats:
    pairs: int = 0
    no_gold: int = 0
    premises: int = 0
    premises_without_triple: int = 0
    triples: int = 0
    labels: dict[str, int] = field(default_factory=dict)


def _check_label(label: str, where: str) -> str:
    lab = label.strip().lower()
    if lab not in LABELS and lab != NO_GOLD:
        raise DataError(f"{where}: unknown NLI label {label!r}; expected one of {', '.join(LABELS)} (or '-')")
    return lab


def read_nli_tsv(path: str | os.PathLike, bad: BadLines | None = None) -> Iterator[tuple[str, str, str]]:
    """Stream ``(premise, hypothesis, label)`` from a TSV with header ``sentence1 sentence2 gold_label``.

    Read with QUOTE_NONE (KorNLI sentences contain bare quotes).
    """
    rows = iter_delimited(path, "\t", csv.QUOTE_NONE)
    header = next(rows, None)
    if header is None:
        raise DataError(f"{path}: empty file; expected a header 'sentence1<TAB>sentence2<TAB>gold_label'")
    names = [h.strip().lower() for h in header[1]]
    try:
        i1, i2, il = names.index("sentence1"), names.index("sentence2"), names.index("gold_label")
    except ValueError:
        raise DataError(
            f"{path}:1: header {header[1]} must name columns sentence1, sentence2 and gold_label"
        ) from None
    for lineno, row in rows:
        where = f"{path}:{lineno}"
        try:
            if len(row) <= max(i1, i2, il):
                raise DataError(f"{where}: NLI row needs {len(names)} TAB-separated columns, got {len(row)}")
            lab = _check_label(row[il], where)
            if not row[i1].strip() or not row[i2].strip():
                raise DataError(f"{where}: empty premise or hypothesis")
        except DataError as e:
            fail_or_skip(bad, path, lineno, row, str(e))
            continue
        yield row[i1].strip(), row[i2].strip(), lab


def read_nli_lines(
    s1_path: str | os.PathLike,
    s2_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    bad: BadLines | None = None,
) -> Iterator[tuple[str, str, str]]:
    """Stream ``(premise, hypothesis, label)`` from three line-aligned files (SNLI as in e-SNLI)."""
    for p in (s1_path, s2_path, labels_path):
        if not os.path.isfile(p):
            raise DataError(f"{p}: no such file; check the path")
    with open_text(s1_path) as f1, open_text(s2_path) as f2, open_text(labels_path) as fl:
        lineno = 0
        while True:
            a, b, lab = f1.readline(), f2.readline(), fl.readline()
            lineno += 1
            if not a and not b and not lab:
                return
            ends = [p for p, x in ((s1_path, a), (s2_path, b), (labels_path, lab)) if not x]
            if ends:
                raise DataError(
                    f"{ends[0]}:{lineno}: file ends before its line-aligned partners "
                    f"({s1_path}, {s2_path}, {labels_path}); they must have the same number of lines"
                )
            where = f"{labels_path}:{lineno}"
            try:
                label = _check_label(lab, where)
                if not a.strip() or not b.strip():
                    raise DataError(f"{s1_path}:{lineno}: empty premise or hypothesis")
            except DataError as e:
                fail_or_skip(bad, labels_path, lineno, f"{a.strip()}\t{b.strip()}\t{lab.strip()}", str(e))
                continue
            yield a.strip(), b.strip(), label


def _group_by_premise(
    rows: Iterable[tuple[str, str, str]], st: NliStats
) -> dict[str, tuple[list[str], list[str]]]:
    """premise -> (entailed hypotheses, contradicting hypotheses), counting labels into ``st``."""
    groups: dict[str, tuple[list[str], list[str]]] = {}
    for premise, hyp, label in rows:
        st.pairs += 1
        st.labels[label] = st.labels.get(label, 0) + 1
        if label == NO_GOLD:
            st.no_gold += 1
            continue
        ent, con = groups.setdefault(premise, ([], []))
        if label == "entailment":
            ent.append(hyp)
        elif label == "contradiction":
            con.append(hyp)
    return groups


def _pairs(ent: list[str], con: list[str], pairing: str) -> list[tuple[str, str]]:
    """(entailment, contradiction) pairs of one premise: first of each, zipped, or all combinations."""
    if pairing == "first":
        return [(ent[0], con[0])]
    if pairing == "zip":
        return list(zip(ent, con))
    return [(e, c) for e in ent for c in con]


def nli_triples(
    rows: Iterable[tuple[str, str, str]],
    pairing: str = "first",
    source: str = "",
    lang: str = "",
    stats: NliStats | None = None,
) -> Iterator[Triple]:
    """Group NLI pairs by premise and emit (premise, entailment, contradiction) triples.

    The construction of supervised SimCSE (Gao et al., 2021, "SimCSE: Simple Contrastive Learning
    of Sentence Embeddings"): the entailed hypothesis is the positive, the contradicting one a hard
    negative; premises without both are counted and skipped.
    """
    if pairing not in PAIRINGS:
        raise DataError(f"unknown NLI pairing {pairing!r}; choose from: {', '.join(PAIRINGS)}")
    st = stats if stats is not None else NliStats()
    groups = _group_by_premise(rows, st)
    st.premises += len(groups)
    for premise, (ent, con) in groups.items():
        if not ent or not con:
            st.premises_without_triple += 1
            continue
        for e, c in _pairs(ent, con, pairing):
            st.triples += 1
            yield Triple(premise, e, c, source=source, lang=lang)
