"""Record formats: typed dataclasses for training and retrieval data, with validation.

Every training record is one JSON object per line (JSONL, optionally gzipped, or a
parquet row with the same columns). Four kinds, told apart by their keys:

==============  ==========================================================  ==========================
kind            JSON keys (``source``, ``lang``, ``id`` optional on all)     what it is
==============  ==========================================================  ==========================
``pair``        ``query``, ``positive``                                      positive pair / bitext
``scored_pair`` ``sentence1``, ``sentence2``, ``score``                      STS-style graded pair
``triple``      ``query``, ``positive``, ``negative``                        NLI (anchor, ent, contra)
``example``     ``query``, ``pos`` (list), ``neg`` (list),                   query with hard negatives
                ``pos_scores``/``neg_scores`` (teacher scores, optional)     (FlagEmbedding layout)
==============  ==========================================================  ==========================

Retrieval data uses the BEIR layout: ``corpus.jsonl`` rows ``{"_id", "title", "text"}``,
``queries.jsonl`` rows ``{"_id", "text"}``, ``qrels/<split>.tsv`` lines
``query-id<TAB>corpus-id<TAB>score`` (header line optional).

All parse functions take the decoded object and a ``where`` string (``file:line``) and
raise :class:`~embforge.errors.DataError` naming it, the rule and the fix.

Example:
    >>> rec = parse_record({"query": "q", "positive": "p", "lang": "en"}, where="a.jsonl:1")
    >>> rec
    Pair(query='q', positive='p', source='', lang='en', id='')
    >>> rec.to_example().pos
    ['p']
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Union

from embforge.errors import DataError

__all__ = [
    "KINDS",
    "Pair",
    "ScoredPair",
    "Triple",
    "Example",
    "Record",
    "CorpusDoc",
    "Query",
    "Qrel",
    "detect_kind",
    "parse_record",
    "parse_corpus_doc",
    "parse_query",
    "parse_qrel_line",
    "check_field_typos",
]

_META = ("source", "lang", "id")
# every field a record kind reads (FlagEmbedding's optional ``prompt`` / ``type`` included)
FIELDS: dict[str, tuple[str, ...]] = {
    "pair": ("query", "positive"),
    "scored_pair": ("sentence1", "sentence2", "score"),
    "triple": ("query", "positive", "negative"),
    "example": ("query", "pos", "neg", "pos_scores", "neg_scores", "prompt", "type"),
}
_RECORD_FIELDS = tuple(dict.fromkeys(f for fs in FIELDS.values() for f in fs)) + _META
_BEIR_FIELDS = ("_id", "title", "text", "metadata", "lang")


@dataclass(frozen=True)
class Pair:
    """A (query, positive) pair: QA, title-body, bitext (``query`` = source sentence)."""

    query: str
    positive: str
    source: str = ""
    lang: str = ""
    id: str = ""

    kind = "pair"

    def to_dict(self) -> dict[str, Any]:
        return _with_meta({"query": self.query, "positive": self.positive}, self)

    def to_example(self) -> Example:
        return Example(self.query, [self.positive], [], source=self.source, lang=self.lang, id=self.id)


@dataclass(frozen=True)
class ScoredPair:
    """A graded sentence pair (STS). ``score`` is kept on the dataset's own scale (STS-B: 0-5)."""

    sentence1: str
    sentence2: str
    score: float
    source: str = ""
    lang: str = ""
    id: str = ""

    kind = "scored_pair"

    def to_dict(self) -> dict[str, Any]:
        d = {"sentence1": self.sentence1, "sentence2": self.sentence2, "score": self.score}
        return _with_meta(d, self)

    def to_example(self) -> Example:
        """As a training example: sentence2 is the positive (filter by score first)."""
        return Example(self.sentence1, [self.sentence2], [], source=self.source, lang=self.lang, id=self.id)


@dataclass(frozen=True)
class Triple:
    """(anchor, positive, hard negative), e.g. NLI (premise, entailment, contradiction)."""

    query: str
    positive: str
    negative: str
    source: str = ""
    lang: str = ""
    id: str = ""

    kind = "triple"

    def to_dict(self) -> dict[str, Any]:
        d = {"query": self.query, "positive": self.positive, "negative": self.negative}
        return _with_meta(d, self)

    def to_example(self) -> Example:
        return Example(
            self.query, [self.positive], [self.negative], source=self.source, lang=self.lang, id=self.id
        )


@dataclass(frozen=True)
class Example:
    """A query with positives, hard negatives and optional teacher scores.

    The JSON layout is FlagEmbedding's fine-tuning layout (``query``, ``pos``, ``neg``,
    ``pos_scores``, ``neg_scores``), so its files load unchanged. Score lists, when
    present, align with ``pos`` / ``neg``.
    """

    query: str
    pos: list[str]
    neg: list[str] = field(default_factory=list)
    pos_scores: list[float] | None = None
    neg_scores: list[float] | None = None
    source: str = ""
    lang: str = ""
    id: str = ""

    kind = "example"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"query": self.query, "pos": list(self.pos), "neg": list(self.neg)}
        if self.pos_scores is not None:
            d["pos_scores"] = [float(x) for x in self.pos_scores]
        if self.neg_scores is not None:
            d["neg_scores"] = [float(x) for x in self.neg_scores]
        return _with_meta(d, self)

    def to_example(self) -> Example:
        return self


Record = Union[Pair, ScoredPair, Triple, Example]
KINDS: dict[str, type] = {c.kind: c for c in (Pair, ScoredPair, Triple, Example)}


@dataclass(frozen=True)
class CorpusDoc:
    """One BEIR corpus document; ``lang`` from the row's ``lang`` (or ``metadata.lang``) field."""

    id: str
    text: str
    title: str = ""
    lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"_id": self.id, "title": self.title, "text": self.text}
        return {**d, "lang": self.lang} if self.lang else d


@dataclass(frozen=True)
class Query:
    """One BEIR query; ``lang`` from the row's ``lang`` (or ``metadata.lang``) field."""

    id: str
    text: str
    lang: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"_id": self.id, "text": self.text}
        return {**d, "lang": self.lang} if self.lang else d


@dataclass(frozen=True)
class Qrel:
    """One relevance judgement (graded: 0 = judged not relevant)."""

    query_id: str
    doc_id: str
    score: int


# ----------------------------------------------------------------------------- helpers


def _with_meta(d: dict[str, Any], rec: Any) -> dict[str, Any]:
    for k in _META:
        v = getattr(rec, k)
        if v:
            d[k] = v
    return d


def _fail(where: str, msg: str) -> DataError:
    return DataError(f"{where}: {msg}")


def check_field_typos(obj: Any, fields: tuple[str, ...], where: str, ignore: tuple[str, ...] = ()) -> None:
    """A key that is not a field but close to one (``postive``) is a typo: a DataError naming
    ``where``, the key, the closest field and the fix. Other extra keys (a data set's own
    metadata columns) are ignored, as before."""
    if not isinstance(obj, dict):
        return
    for key in obj:
        if not isinstance(key, str) or key in fields or key in ignore:
            continue
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.75)
        if close:
            raise _fail(
                where,
                f"unknown field {key!r}; did you mean {close[0]!r}? rename {key!r} to {close[0]!r} "
                f"(fields: {', '.join(fields)})",
            )


def _text(obj: dict, key: str, where: str, kind: str) -> str:
    if key not in obj:
        raise _fail(where, f"{kind} record has no {key!r} field (keys: {sorted(obj)}); add it")
    v = obj[key]
    if not isinstance(v, str):
        raise _fail(where, f"field {key!r} must be a string, got {type(v).__name__} {v!r:.60}")
    if not v.strip():
        raise _fail(where, f"field {key!r} is empty; drop the record or fill the text")
    return v


def _opt_str(obj: dict, key: str, where: str) -> str:
    v = obj.get(key, "")
    if v is None:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and key == "id":
        return str(v)
    if not isinstance(v, str):
        raise _fail(where, f"field {key!r} must be a string, got {type(v).__name__} {v!r:.60}")
    return v


def _number(v: Any, key: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _fail(where, f"field {key!r} must be a number, got {type(v).__name__} {v!r:.60}")
    x = float(v)
    if not math.isfinite(x):
        raise _fail(where, f"field {key!r} must be finite, got {v!r}")
    return x


def _text_list(obj: dict, key: str, where: str, required: bool) -> list[str]:
    if key not in obj or obj[key] is None:
        if required:
            raise _fail(where, f"example record has no {key!r} list (keys: {sorted(obj)}); add it")
        return []
    v = obj[key]
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise _fail(where, f"field {key!r} must be a list of strings, got {type(v).__name__}")
    for i, t in enumerate(v):
        if not isinstance(t, str) or not t.strip():
            raise _fail(where, f"{key}[{i}] must be a non-empty string, got {t!r:.60}")
    if required and not v:
        raise _fail(where, f"field {key!r} is an empty list; an example needs at least one positive")
    return list(v)


def _scores(obj: dict, key: str, n: int, where: str) -> list[float] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list):
        raise _fail(where, f"field {key!r} must be a list of numbers, got {type(v).__name__}")
    if len(v) != n:
        texts = "pos" if key == "pos_scores" else "neg"
        raise _fail(where, f"{key!r} has {len(v)} scores but {texts!r} has {n} texts; they must align")
    return [_number(x, f"{key}[{i}]", where) for i, x in enumerate(v)]


# ----------------------------------------------------------------------------- parsing


def detect_kind(obj: Any, where: str = "<record>") -> str:
    """The record kind of a decoded JSON object, from its keys (see the module table)."""
    if not isinstance(obj, dict):
        raise _fail(where, f"a record must be a JSON object, got {type(obj).__name__} {obj!r:.60}")
    if "pos" in obj:
        return "example"
    if "sentence1" in obj or "sentence2" in obj:
        return "scored_pair"
    if "negative" in obj:
        return "triple"
    if "positive" in obj:
        return "pair"
    raise _fail(
        where,
        f"cannot tell the record kind from keys {sorted(obj)}; expected query+positive (pair), "
        "query+positive+negative (triple), sentence1+sentence2+score (scored_pair) or "
        "query+pos+neg (example)",
    )


def parse_record(obj: Any, where: str = "<record>", kind: str | None = None) -> Record:
    """Validate a decoded object and build its typed record.

    Args:
        obj: the decoded JSON object (or parquet row).
        where: ``file:line`` for error messages.
        kind: expected kind; None = detect from the keys.

    Raises:
        DataError: naming ``where``, the bad field and the fix.
    """
    if isinstance(obj, dict) and any(v is None for v in obj.values()):
        # null = absent (a parquet file holding several kinds has null columns per row)
        obj = {k: v for k, v in obj.items() if v is not None}
    check_field_typos(obj, _RECORD_FIELDS, where, ignore=_BEIR_FIELDS)
    found = detect_kind(obj, where)
    if kind is not None and found != kind:
        if kind not in KINDS:
            raise DataError(f"unknown record kind {kind!r}; choose from: {', '.join(sorted(KINDS))}")
        raise _fail(where, f"expected a {kind} record but keys {sorted(obj)} make a {found}")
    meta = {k: _opt_str(obj, k, where) for k in _META}
    if found == "pair":
        return Pair(_text(obj, "query", where, found), _text(obj, "positive", where, found), **meta)
    if found == "triple":
        q, p = _text(obj, "query", where, found), _text(obj, "positive", where, found)
        return Triple(q, p, _text(obj, "negative", where, found), **meta)
    if found == "scored_pair":
        s1, s2 = _text(obj, "sentence1", where, found), _text(obj, "sentence2", where, found)
        if "score" not in obj:
            raise _fail(where, "scored_pair record has no 'score' field; add the gold similarity")
        return ScoredPair(s1, s2, _number(obj["score"], "score", where), **meta)
    q = _text(obj, "query", where, found)
    pos = _text_list(obj, "pos", where, required=True)
    neg = _text_list(obj, "neg", where, required=False)
    return Example(
        q,
        pos,
        neg,
        _scores(obj, "pos_scores", len(pos), where),
        _scores(obj, "neg_scores", len(neg), where),
        **meta,
    )


def _beir_id(obj: Any, where: str, what: str) -> str:
    if not isinstance(obj, dict):
        raise _fail(where, f"a {what} must be a JSON object, got {type(obj).__name__}")
    v = obj.get("_id", obj.get("id"))
    if v is None or (isinstance(v, str) and not v.strip()):
        raise _fail(where, f"{what} has no '_id'; every BEIR {what} needs a unique '_id'")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise _fail(where, f"'_id' must be a string, got {type(v).__name__} {v!r:.60}")
    return str(v)


def _row_lang(obj: dict, where: str) -> str:
    """A BEIR row's language: its ``lang`` field, else ``metadata.lang`` / ``metadata.language``."""
    meta = obj.get("metadata")
    v = obj.get("lang")
    if v is None and isinstance(meta, dict):
        v = meta.get("lang", meta.get("language"))
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _fail(where, f"field 'lang' must be a language tag string (e.g. 'de'), got {type(v).__name__} {v!r:.60}")
    return v.strip()


def parse_corpus_doc(obj: Any, where: str = "<corpus>") -> CorpusDoc:
    """A BEIR corpus row ``{"_id", "title"?, "text"}``.

    An empty document (empty title and text) is valid: public collections hold some, and
    they must stay in the corpus (they simply never match); readers count them.
    """
    doc_id = _beir_id(obj, where, "corpus document")
    check_field_typos(obj, _BEIR_FIELDS, where, ignore=("id",))
    if "text" not in obj and "title" not in obj:
        raise _fail(where, f"document {doc_id!r} has no 'text' field; add it (it may be empty)")
    text = obj.get("text") or ""
    title = obj.get("title") or ""
    if not isinstance(text, str) or not isinstance(title, str):
        raise _fail(where, f"document {doc_id!r}: 'text' and 'title' must be strings")
    return CorpusDoc(doc_id, text, title, _row_lang(obj, where))


def parse_query(obj: Any, where: str = "<queries>") -> Query:
    """A BEIR query row ``{"_id", "text"}``."""
    qid = _beir_id(obj, where, "query")
    check_field_typos(obj, _BEIR_FIELDS, where, ignore=("id",))
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _fail(where, f"query {qid!r} has no non-empty 'text' string")
    return Query(qid, text, _row_lang(obj, where))


def parse_qrel_line(line: str, where: str = "<qrels>") -> Qrel:
    """One qrels line ``query-id<TAB>corpus-id<TAB>score`` (TREC 4-column lines also accepted)."""
    parts = line.rstrip("\r\n").split("\t")
    if len(parts) == 4:  # TREC: qid iter docid rel
        parts = [parts[0], parts[2], parts[3]]
    if len(parts) != 3:
        raise _fail(
            where, f"qrels line needs 3 TAB-separated fields (query-id, corpus-id, score), got {len(parts)}"
        )
    qid, did, score = (p.strip() for p in parts)
    if not qid:
        raise _fail(where, "qrels line has an empty query-id")
    if not did:
        raise _fail(where, "qrels line has an empty corpus-id")
    try:
        s = float(score)
    except ValueError:
        raise _fail(
            where, f"qrels score {score!r} is not a number (graded relevance, e.g. 0, 1, 2)"
        ) from None
    if not s.is_integer():
        raise _fail(where, f"qrels score {score!r} must be an integer grade")
    return Qrel(qid, did, int(s))
