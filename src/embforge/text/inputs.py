"""Validation of user texts: every bad value is named with its position and the fix."""

from __future__ import annotations

from collections.abc import Iterable

from embforge.errors import DataError

__all__ = ["check_texts"]


def _show(x: object) -> str:
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."


def check_texts(texts: str | Iterable[str], name: str = "texts") -> list[str]:
    """Return ``texts`` as a list of non-empty strings, or raise ``DataError`` naming the bad one.

    A single string is treated as a list of one text.

    Example:
        >>> check_texts("hi")
        ['hi']
    """
    if texts is None:
        raise DataError(f"{name} is None; pass a list of non-empty strings")
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, bytes) or not isinstance(texts, Iterable):
        raise DataError(
            f"{name} must be a string or a list of strings, got {type(texts).__name__} {_show(texts)}; "
            "wrap it in a list of strings"
        )
    out = list(texts)
    for i, t in enumerate(out):
        if t is None:
            raise DataError(
                f"{name}[{i}] is None; every text must be a non-empty string: drop it or replace it"
            )
        if not isinstance(t, str):
            raise DataError(
                f"{name}[{i}] has type {type(t).__name__} ({_show(t)}); every text must be a str: "
                "convert it with str() or drop it"
            )
        if not t.strip():
            raise DataError(
                f"{name}[{i}] is empty or whitespace only ({_show(t)}); an empty text has no embedding: "
                "drop it or replace it with real text"
            )
    return out
