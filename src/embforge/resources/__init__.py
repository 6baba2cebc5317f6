"""Files shipped with the package, found wherever it is installed.

``demo_path(name)`` is the path of one bundled demo set (BEIR layout: ``corpus.jsonl``,
``queries.jsonl``, ``qrels/{train,test}.tsv``), so examples and docs run from any folder::

    >>> from embforge.resources import demo_path
    >>> (demo_path("xquad-de") / "corpus.jsonl").is_file()
    True

The sets are XQuAD (Artetxe et al., 2020, "On the Cross-lingual Transferability of Monolingual
Representations"; CC BY-SA 4.0, see ``demo/ATTRIBUTION.txt``).
"""

from __future__ import annotations

from pathlib import Path

from embforge.errors import DataError

__all__ = ["DEMO_ROOT", "demo_names", "demo_path"]

DEMO_ROOT = Path(__file__).resolve().parent / "demo"


def demo_names() -> list[str]:
    """The bundled demo sets: ``xquad-de``, ``xquad-en``, ``xquad-es``."""
    return sorted(p.name for p in DEMO_ROOT.iterdir() if (p / "corpus.jsonl").is_file())


def demo_path(name: str = "xquad-en") -> Path:
    """The folder of the bundled demo set ``name`` (e.g. ``"xquad-de"``); unknown names fail with the choices."""
    path = DEMO_ROOT / name
    if not (path / "corpus.jsonl").is_file():
        raise DataError(f"no bundled demo set {name!r}; choose from: {', '.join(demo_names())}")
    return path
