"""Hybrid index: one index per head, candidates from dense and/or sparse, then
re-ranking of the candidate union by a fusion of every head's exact score.

As in BGE-M3 (Chen et al., 2024, "BGE M3-Embedding"): retrieve with dense and/or
sparse, re-rank by ``w1*s_dense + w2*s_lex + w3*s_mul`` (``DEFAULT_WEIGHTS``) or any
other fusion of ``embforge.scoring.FUSIONS``; multi-vector is a re-ranker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, IdMap, check_k, load_index
from embforge.index.storage import write_manifest
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K
from embforge.types import HEADS, Embeddings, Hits

__all__ = ["HybridIndex"]

Weights = Mapping[str, float] | Sequence[float] | None


def _weights(w: Weights, default: Mapping[str, float]) -> dict[str, float]:
    if w is None:
        return dict(default)
    if isinstance(w, Mapping):
        bad = sorted(set(w) - set(HEADS))
        if bad:
            raise ConfigError(f"unknown head {bad[0]!r} in weights; choose from: {', '.join(HEADS)}")
        return {**default, **{k: float(v) for k, v in w.items()}}
    w = list(w)
    if len(w) != 3:
        raise ConfigError(f"weights must be (w_dense, w_sparse, w_multivector), got {w!r}")
    return dict(zip(HEADS, map(float, w)))


@INDEXES.register("hybrid")
class HybridIndex(BaseIndex):
    """Dense + sparse + multi-vector indexes behind one ``add``/``search``.

    Args:
        dense, sparse, multivector: component indexes (any may be None).
        retrieve: heads that produce candidates (of those present); if none is
            present, the multi-vector index is searched brute force.
        candidates: candidates per retrieving head before re-ranking.
        fusion: a name in ``embforge.scoring.FUSIONS``: "weighted" (BGE-M3 weighted sum),
            "minmax" / "zscore" (weighted sum of per-query normalised scores) or "rrf".
        weights: head -> weight; default ``DEFAULT_WEIGHTS`` (1 each for "rrf").
        rrf_k: the RRF constant (60).
        meta: JSON-serialisable notes saved with the index (``build_index`` records the encoder).
    """

    kind = "hybrid"

    def __init__(
        self,
        dense: Any = None,
        sparse: Any = None,
        multivector: Any = None,
        retrieve: Sequence[str] = ("dense", "sparse"),
        candidates: int = 100,
        fusion: str = "weighted",
        weights: Weights = None,
        rrf_k: int = RRF_K,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.meta: dict[str, Any] = dict(meta or {})  # free-form, saved in index.json (e.g. the encoder)
        self.components: dict[str, Any] = {
            h: c
            for h, c in (("dense", dense), ("sparse", sparse), ("multivector", multivector))
            if c is not None
        }
        if not self.components:
            raise ConfigError("HybridIndex needs at least one of dense=, sparse=, multivector=")
        bad = [h for h in retrieve if h not in HEADS]
        if bad:
            raise ConfigError(f"unknown head {bad[0]!r} in retrieve; choose from: {', '.join(HEADS)}")
        FUSIONS.get(fusion)
        self.retrieve = tuple(retrieve)
        self.candidates = int(candidates)
        self.fusion = fusion
        self.weights = None if weights is None else _weights(weights, DEFAULT_WEIGHTS)
        self.rrf_k = int(rrf_k)
        # rebuild the id map from the components (they hold the same ids)
        first = next(iter(self.components.values()))
        self.idmap = IdMap(first.ids) if len(first) else IdMap()

    @property
    # a hybrid's heads are its components': an instance property replaces BaseIndex's ClassVar
    def heads(self) -> tuple[str, ...]:  # type: ignore[override]  # see above
        return tuple(self.components)

    def add(self, ids: Sequence[str], vectors: Embeddings) -> None:
        """Add (or replace) documents in every component; ``vectors`` holds each component's head."""
        if not isinstance(vectors, Embeddings):
            raise DataError(
                f"HybridIndex.add needs Embeddings with heads {self.heads}, got {type(vectors).__name__}"
            )
        ids = self.idmap.check_new(ids, len(vectors), "embeddings")
        # validate every head first, so a bad head never leaves the components out of step
        prepared = [(c, c.prepare(ids, vectors)) for c in self.components.values()]
        for c, p in prepared:
            c.commit(*p)
        self.idmap.append(ids)

    def delete(self, ids: Sequence[str]) -> int:
        for c in self.components.values():
            c.delete(ids)
        return self.idmap.delete(ids)

    def compact(self) -> None:
        for c in self.components.values():
            c.compact()
        self.idmap = IdMap(next(iter(self.components.values())).ids)

    def _default_weights(self, fusion: str) -> dict[str, float]:
        if self.weights is not None:
            return self.weights
        return dict.fromkeys(HEADS, 1.0) if fusion == "rrf" else dict(DEFAULT_WEIGHTS)

    def _candidates(self, queries: Embeddings, n: int) -> list[list[str]]:
        sources = [h for h in self.retrieve if h in self.components]
        if not sources:
            sources = ["multivector"] if "multivector" in self.components else list(self.components)[:1]
        cand: list[dict[str, None]] = [{} for _ in range(len(queries))]
        for h in sources:
            hits = self.components[h].search(queries, n)
            for c, ids in zip(cand, hits.ids):
                c.update(dict.fromkeys(ids))
        return [list(c) for c in cand]

    def search(
        self,
        queries: Embeddings,
        k: int = 10,
        weights: Weights | Sequence[Weights] = None,
        fusion: str | None = None,
        candidates: int | None = None,
    ) -> Hits:
        """Top-``k`` by fused score; ``Hits.per_head`` holds every head's exact score.

        Args:
            queries: Embeddings with every component's head.
            weights: override for all queries (dict or 3-tuple), or a list with one
                override (or None) per query.
            fusion: a name in ``FUSIONS`` (default: the index's).
            candidates: candidates per retrieving head (default: the index's, at least k).
        """
        k = check_k(k)
        fusion = fusion or self.fusion
        fuse = FUSIONS.get(fusion)
        if not isinstance(queries, Embeddings):
            raise DataError(
                f"HybridIndex.search needs Embeddings with heads {self.heads}, got {type(queries).__name__}"
            )
        nq = len(queries)
        base = self._default_weights(fusion)
        if isinstance(weights, (list, tuple)) and weights and not isinstance(weights[0], (int, float)):
            if len(weights) != nq:
                raise ConfigError(f"got {len(weights)} per-query weight overrides for {nq} queries")
            per_query = [_weights(w, base) for w in weights]
        else:
            # not a list of per-query overrides (checked above): one Weights for every query
            per_query = [_weights(weights, base)] * nq  # type: ignore[arg-type]  # see above
        cand = self._candidates(queries, max(k, candidates or self.candidates))
        head_scores = {h: c.score(queries, cand) for h, c in self.components.items()}
        ids_out, sc_out = [], []
        per_head: dict[str, list[list[float]]] = {h: [] for h in head_scores}
        for i in range(nq):
            s = {h: head_scores[h][i] for h in head_scores}
            fused = fuse(s, per_query[i], rrf_k=self.rrf_k) if len(cand[i]) else np.zeros(0)
            order = np.argsort(-fused, kind="stable")[:k]
            ids_out.append([cand[i][j] for j in order])
            sc_out.append([float(fused[j]) for j in order])
            for h in head_scores:
                per_head[h].append([float(s[h][j]) for j in order])
        return Hits(ids=ids_out, scores=sc_out, per_head=per_head)

    # ---- persistence --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "retrieve": list(self.retrieve),
            "candidates": self.candidates,
            "fusion": self.fusion,
            "weights": self.weights,
            "rrf_k": self.rrf_k,
        }

    def _write(self, d: Path) -> None:
        for h, c in self.components.items():
            (d / h).mkdir()
            c._write(d / h)
        write_manifest(
            d,
            self.kind,
            self.config(),
            components={h: c.kind for h, c in self.components.items()},
            count=len(self),
            meta=self.meta,
        )

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> HybridIndex:
        comps: dict[str, Any] = {h: load_index(d / h, mmap=mmap) for h in manifest.get("components", {})}
        return cls(**comps, **manifest["config"], meta=manifest.get("meta"))
