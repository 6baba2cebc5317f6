"""A model's hybrid fusion: ``fusion.json`` in the model folder (written by ``embforge tune-fusion``).

``Encoder.from_pretrained`` reads it into ``Encoder.fusion`` (a ``ModelFusion``; None when the
folder has none: then the paper's weighted sum ``1*s_dense + 0.3*s_lex + 1*s_mul`` applies,
Chen et al., 2024, "BGE M3-Embedding"). ``index``, ``search``, ``eval`` and ``serve`` use it as
their default; an explicit fusion or weights option still wins (``ModelFusion.resolve``).

File format::

    {"fusion": "zscore", "weights": {"dense": 1.0, "sparse": 0.5, "multivector": 1.0},
     "rrf_k": 60, "tuned": {...what tune-fusion measured...},
     "low_coverage": {"max_chars_per_token": 1.5, "weights": {...}}}

``low_coverage`` (optional, ``CoverageSplit``): other weights for the queries the model's tokenizer
covers poorly (``embforge.text.coverage``), chosen by ``embforge tune-fusion`` when the dev split
measures a gain; a query's weights then depend on its text (``ModelFusion.query_weights``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embforge.atomic import atomic_write_text
from embforge.errors import ConfigError
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K
from embforge.text.coverage import LOW_COVERAGE_CHARS_PER_TOKEN, chars_per_token

__all__ = ["FUSION_FILE", "CoverageSplit", "ModelFusion", "default_weights", "read_fusion", "write_fusion"]

FUSION_FILE = "fusion.json"


def default_weights(fusion: str) -> dict[str, float]:
    """The weights a fusion uses when none are given: 1 per head for RRF, else ``DEFAULT_WEIGHTS``."""
    return dict.fromkeys(DEFAULT_WEIGHTS, 1.0) if fusion == "rrf" else dict(DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class CoverageSplit:
    """The weights (same fusion rule) for queries with at most ``max_chars_per_token`` characters
    per token under the model's tokenizer (``embforge.text.coverage.chars_per_token``)."""

    weights: Mapping[str, float]
    max_chars_per_token: float = LOW_COVERAGE_CHARS_PER_TOKEN

    def to_dict(self) -> dict[str, Any]:
        return {"max_chars_per_token": self.max_chars_per_token, "weights": dict(self.weights)}


@dataclass(frozen=True)
class ModelFusion:
    """A fusion rule of ``embforge.scoring.FUSIONS`` with its per-head weights, and optionally
    other weights for queries the tokenizer covers poorly (``low_coverage``)."""

    fusion: str = "weighted"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rrf_k: int = RRF_K
    tuned: dict[str, Any] = field(default_factory=dict)
    low_coverage: CoverageSplit | None = None

    def query_weights(
        self,
        texts: Iterable[str],
        tokenizer: Any,
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[dict[str, float]] | None:
        """One weights mapping per query text when the coverage split applies (the model has one and
        the caller chose neither weights nor another fusion rule); else None (``resolve`` applies).

        Example:
            >>> from embforge.model.builders import bundled_model_path
            >>> from transformers import AutoTokenizer
            >>> tok = AutoTokenizer.from_pretrained(bundled_model_path())
            >>> m = ModelFusion("weighted", {"dense": 1.0, "sparse": 0.3}, low_coverage=CoverageSplit({"sparse": 1.0}))
            >>> [w["sparse"] for w in m.query_weights(["where is the station", "\u0645\u062d\u0637\u0629"], tok)]
            [0.3, 1.0]
        """
        if self.low_coverage is None or weights or (fusion is not None and fusion != self.fusion):
            return None
        low = chars_per_token(texts, tokenizer) <= self.low_coverage.max_chars_per_token
        return [dict(self.low_coverage.weights) if x else dict(self.weights) for x in low]

    def resolve(
        self, fusion: str | None = None, weights: Mapping[str, float] | None = None
    ) -> dict[str, Any]:
        """``{"fusion", "weights"}`` for a search: explicit values win (explicit weights whole: a head
        they leave out weighs 0, as ``embforge.scoring.parse_weights``); weights tuned for another
        fusion rule are not carried over to an explicitly different one.

        Example:
            >>> m = ModelFusion("zscore", {"dense": 1.0, "sparse": 0.5, "multivector": 1.0})
            >>> m.resolve()["fusion"], m.resolve("rrf")["weights"]["sparse"]
            ('zscore', 1.0)
        """
        rule = fusion or self.fusion
        base = dict(self.weights) if rule == self.fusion else default_weights(rule)
        return {"fusion": rule, "weights": dict(weights) if weights else base}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "fusion": self.fusion,
            "weights": dict(self.weights),
            "rrf_k": self.rrf_k,
            "tuned": dict(self.tuned),
        }
        if self.low_coverage is not None:
            out["low_coverage"] = self.low_coverage.to_dict()
        return out


def read_fusion(model_dir: str | os.PathLike | None) -> ModelFusion | None:
    """``model_dir/fusion.json`` as a ``ModelFusion`` (None if the folder or file does not exist)."""
    if model_dir is None:
        return None
    path = Path(model_dir) / FUSION_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e}); rerun `embforge tune-fusion` or delete the file"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected an object with 'fusion' and 'weights'; rerun `embforge tune-fusion`"
        )
    rule = raw.get("fusion", "weighted")
    if rule not in FUSIONS.names():
        raise ConfigError(
            f"{path}: fusion {rule!r} is not known; choose from: {', '.join(FUSIONS.names())} "
            "(or rerun `embforge tune-fusion`)"
        )
    weights = _read_weights(path, "weights", raw.get("weights") or default_weights(rule))
    return ModelFusion(
        rule, weights, int(raw.get("rrf_k", RRF_K)), dict(raw.get("tuned") or {}), _read_split(path, raw)
    )


def _read_weights(path: Path, key: str, weights: Any) -> dict[str, float]:
    bad = (
        {h: v for h, v in weights.items() if h not in DEFAULT_WEIGHTS or not isinstance(v, (int, float))}
        if isinstance(weights, dict) and weights
        else weights
    )
    if bad or not weights:
        raise ConfigError(
            f"{path}: {key} {bad} are not head -> number for heads {', '.join(DEFAULT_WEIGHTS)}; fix or delete the file"
        )
    return {h: float(v) for h, v in weights.items()}


def _read_split(path: Path, raw: dict[str, Any]) -> CoverageSplit | None:
    split = raw.get("low_coverage")
    if split is None:
        return None
    limit = split.get("max_chars_per_token") if isinstance(split, dict) else None
    if not isinstance(limit, (int, float)) or limit < 0:
        raise ConfigError(
            f"{path}: low_coverage needs 'max_chars_per_token' (a number >= 0) and 'weights', got {split!r}; "
            "rerun `embforge tune-fusion` or delete the low_coverage entry"
        )
    return CoverageSplit(_read_weights(path, "low_coverage weights", split.get("weights") or {}), float(limit))


def write_fusion(model_dir: str | os.PathLike, fusion: ModelFusion) -> Path:
    """Write ``model_dir/fusion.json`` atomically; returns its path."""
    return atomic_write_text(Path(model_dir) / FUSION_FILE, json.dumps(fusion.to_dict(), indent=1) + "\n")
