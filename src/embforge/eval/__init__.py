"""Evaluation: retrieval/STS/bitext metrics, evaluation runs, reports with plots, MTEB adapter.

``embforge.eval.metrics`` and ``runner`` need no model (the runner takes any object with
``encode``); ``mteb_adapter`` wraps an ``embforge.model.encoder.Encoder`` for mteb.
"""

from __future__ import annotations

__all__: list[str] = []
