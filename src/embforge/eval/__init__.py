"""Evaluation: retrieval/STS/bitext metrics, evaluation runs, reports with plots, MTEB adapter.

``embforge.eval.metrics`` needs no model; the rest imports the model lazily.
"""

from __future__ import annotations

__all__: list[str] = []
