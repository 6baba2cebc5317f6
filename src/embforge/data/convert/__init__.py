"""Converters from public dataset layouts to embforge's record formats.

Each converter streams its input where the layout allows (TSV, CSV and line files are
read line by line; SQuAD JSON is one document and is parsed whole), validates every
row with ``file:line`` errors, and takes an optional :class:`~embforge.data.io.BadLines`
sink for ``--skip-bad``. They are also the templates for bringing your own data: any
file in one of these layouts converts the same way.

Modules:
    squad: SQuAD-format QA (XQuAD) -> BEIR retrieval, per language and cross-lingual.
    sts: STS-B TSV, KorSTS TSV, stsb_multi_mt CSV -> scored pairs.
    nli: KorNLI TSV, SNLI line files -> (anchor, entailment, contradiction) triples.
    bitext: Tatoeba-style line-aligned files -> bitext pairs.
"""

from __future__ import annotations

__all__ = ["squad", "sts", "nli", "bitext"]
