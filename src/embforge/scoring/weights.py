"""Hybrid weights, one rule everywhere: the Python API (``HybridIndex``, ``evaluate_retrieval``),
``embforge search --weights``, ``embforge eval --weights`` and the server's ``/v1/search`` body all
read per-head weights with :func:`parse_weights`, so they parse, check and word errors alike.

The rule: the weights given are exactly the weights used; a head left out weighs 0
(``{"sparse": 1.0}`` ranks by the sparse score alone). Nothing is merged with
``DEFAULT_WEIGHTS`` (BGE-M3's 1, 0.3, 1; Chen et al., 2024), which apply only when no weights
are given at all.

Accepted forms:

* a mapping ``{"dense": 1, "sparse": 0.3}`` (FlagEmbedding's ``colbert`` / ``lexical_weights``
  names are accepted for ``multivector`` / ``sparse``);
* three numbers in the order dense, sparse, multivector: ``(1, 0.3, 1)`` or ``"1,0.3,1"``;
* a string of ``head=weight`` pairs: ``"dense=1,sparse=0.3"``.

Every weight is a finite number >= 0 and at least one is > 0.

Example:
    >>> parse_weights({"sparse": 1})
    {'dense': 0.0, 'sparse': 1.0, 'multivector': 0.0}
    >>> parse_weights("1,0.3,1")
    {'dense': 1.0, 'sparse': 0.3, 'multivector': 1.0}
    >>> parse_weights("dense=1,colbert=0.5")
    {'dense': 1.0, 'sparse': 0.0, 'multivector': 0.5}
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from embforge.errors import ConfigError
from embforge.types import HEADS

__all__ = ["WEIGHT_ALIASES", "WEIGHTS_HELP", "parse_weights"]

#: FlagEmbedding's names for the heads, accepted as weight keys.
WEIGHT_ALIASES: Mapping[str, str] = {
    "colbert": "multivector",
    "lexical_weights": "sparse",
    "lexical": "sparse",
}
#: the fix every weights error ends with.
WEIGHTS_HELP = "give three numbers dense,sparse,multivector (e.g. 1,0.3,1) or head=weight pairs (e.g. dense=1,sparse=0.3); a head left out weighs 0"


def _bad(what: str, value: Any, problem: str) -> ConfigError:
    return ConfigError(f"{what} {repr(value):.120}: {problem}; {WEIGHTS_HELP}")


def _number(what: str, value: Any, head: str, w: Any) -> float:
    if isinstance(w, str):
        try:
            w = float(w)
        except ValueError:
            raise _bad(what, value, f"{w!r} is not a number") from None
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        raise _bad(what, value, f"the weight of {head} must be a number, got {type(w).__name__}")
    x = float(w)
    if not math.isfinite(x) or x < 0:
        raise _bad(what, value, f"the weight of {head} must be a finite number >= 0, got {w!r}")
    return x


def _head(what: str, value: Any, name: Any) -> str:
    key = WEIGHT_ALIASES.get(name, name) if isinstance(name, str) else name
    if key in HEADS:
        return str(key)
    close = difflib.get_close_matches(str(name), [*HEADS, *WEIGHT_ALIASES], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise _bad(what, value, f"unknown head {name!r}{hint}; heads: {', '.join(HEADS)}")


def _pairs(what: str, value: Any) -> dict[Any, Any] | list[Any]:
    """A string as a name -> weight dict (``dense=1,...``) or a list of three numbers (``1,0.3,1``)."""
    parts = [p.strip() for p in value.split(",")]
    if any("=" in p for p in parts):
        if not all(p.count("=") == 1 for p in parts):
            raise _bad(what, value, "mix of head=weight pairs and bare numbers")
        out: dict[Any, Any] = {}
        for p in parts:
            name, w = (x.strip() for x in p.split("="))
            if name in out:
                raise _bad(what, value, f"head {name!r} given twice")
            out[name] = w
        return out
    return parts


def parse_weights(value: Any, what: str = "weights") -> dict[str, float] | None:
    """Hybrid weights head -> weight for every head (missing heads 0), or None when ``value`` is None.

    Args:
        value: a mapping, three numbers, or a string (see the module docstring).
        what: how the caller names the value in errors (``--weights``, ``weights``).

    Raises:
        ConfigError: naming ``what``, the value, the problem and the accepted forms.
    """
    if value is None:
        return None
    raw = _pairs(what, value) if isinstance(value, str) else value
    if isinstance(raw, Mapping):
        out = dict.fromkeys(HEADS, 0.0)
        seen: set[str] = set()
        for name, w in raw.items():
            head = _head(what, value, name)
            if head in seen:
                raise _bad(what, value, f"the {head} head is given twice")
            seen.add(head)
            out[head] = _number(what, value, str(name), w)
    elif isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        if len(raw) != len(HEADS):
            raise _bad(what, value, f"{len(raw)} number(s) where three are needed")
        out = {h: _number(what, value, h, w) for h, w in zip(HEADS, raw)}
    else:
        raise _bad(
            what, value, f"weights must be a mapping, three numbers or a string, got {type(value).__name__}"
        )
    if not any(out.values()):
        raise _bad(what, value, "every weight is 0, so nothing would be ranked")
    return out
