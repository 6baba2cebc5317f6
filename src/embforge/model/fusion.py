"""A model's hybrid fusion: ``fusion.json`` in the model folder (written by ``embforge tune-fusion``).

``Encoder.from_pretrained`` reads it into ``Encoder.fusion`` (a ``ModelFusion``; None when the
folder has none: then the paper's weighted sum ``1*s_dense + 0.3*s_lex + 1*s_mul`` applies,
Chen et al., 2024, "BGE M3-Embedding"). ``index``, ``search``, ``eval`` and ``serve`` use it as
their default; an explicit fusion or weights option still wins (``ModelFusion.resolve``).

File format::

    {"fusion": "zscore", "weights": {"dense": 1.0, "sparse": 0.5, "multivector": 1.0},
     "rrf_k": 60, "tuned": {...what tune-fusion measured...}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embforge.atomic import atomic_write_text
from embforge.errors import ConfigError
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K

__all__ = ["FUSION_FILE", "ModelFusion", "default_weights", "read_fusion", "write_fusion"]

FUSION_FILE = "fusion.json"


def default_weights(fusion: str) -> dict[str, float]:
    """The weights a fusion uses when none are given: 1 per head for RRF, else ``DEFAULT_WEIGHTS``."""
    return dict.fromkeys(DEFAULT_WEIGHTS, 1.0) if fusion == "rrf" else dict(DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class ModelFusion:
    """A fusion rule of ``embforge.scoring.FUSIONS`` with its per-head weights."""

    fusion: str = "weighted"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rrf_k: int = RRF_K
    tuned: dict[str, Any] = field(default_factory=dict)

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
        return {
            "fusion": self.fusion,
            "weights": dict(self.weights),
            "rrf_k": self.rrf_k,
            "tuned": dict(self.tuned),
        }


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
    weights = raw.get("weights") or default_weights(rule)
    bad = {h: v for h, v in weights.items() if h not in DEFAULT_WEIGHTS or not isinstance(v, (int, float))}
    if bad:
        raise ConfigError(
            f"{path}: weights {bad} are not head -> number for heads {', '.join(DEFAULT_WEIGHTS)}; fix or delete the file"
        )
    return ModelFusion(
        rule,
        {h: float(v) for h, v in weights.items()},
        int(raw.get("rrf_k", RRF_K)),
        dict(raw.get("tuned") or {}),
    )


def write_fusion(model_dir: str | os.PathLike, fusion: ModelFusion) -> Path:
    """Write ``model_dir/fusion.json`` atomically; returns its path."""
    return atomic_write_text(Path(model_dir) / FUSION_FILE, json.dumps(fusion.to_dict(), indent=1) + "\n")
