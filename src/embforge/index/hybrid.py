"""Hybrid index: one index per head, candidates from dense and/or sparse, then
re-ranking of the candidate union by a fusion of every head's exact score.

As in BGE-M3 (Chen et al., 2024, "BGE M3-Embedding"): retrieve with dense and/or
sparse, re-rank by ``w1*s_dense + w2*s_lex + w3*s_mul`` (``DEFAULT_WEIGHTS``) or any
other fusion of ``embforge.scoring.FUSIONS``; multi-vector is a re-ranker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, IdMap, check_k, load_index
from embforge.index.storage import write_manifest
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K
from embforge.scoring.weights import parse_weights
from embforge.types import HEADS, Embeddings, Hits

__all__ = ["HybridIndex"]

Weights = Mapping[str, float] | Sequence[float] | None


def _weights(w: Weights, default: Mapping[str, float]) -> dict[str, float]:
    """``w`` by the one weights rule (:func:`embforge.scoring.parse_weights`: missing heads weigh 0), or ``default``."""
    return dict(default) if w is None else cast(dict[str, float], parse_weights(w))


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
        weights: head -> weight, read by :func:`embforge.scoring.parse_weights` (a head left out
            weighs 0); default ``DEFAULT_WEIGHTS`` (1 each for "rrf").
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
        first = next(iter(self.components.values()))  # share its rows (tombstones too) when possible
        self.idmap = IdMap(first.idmap.ids, first.idmap.alive.copy()) if first.idmap.n_rows else IdMap()

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

    def _row_maps(self) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
        """Per component: None when its rows are the hybrid's rows, else (its row -> hybrid row,
        hybrid row -> its row) (components built apart or loaded with other tombstones)."""
        key = (self.idmap.n_rows, len(self.idmap)) + tuple(
            (c.idmap.n_rows, len(c.idmap)) for c in self.components.values()
        )
        if getattr(self, "_maps_key", None) != key:
            self._maps = {
                h: None
                if c.idmap.ids == self.idmap.ids
                else (self.idmap.rows(c.idmap.ids), c.idmap.rows(self.idmap.ids))
                for h, c in self.components.items()
            }
            self._maps_key = key
        return self._maps

    def candidate_rows(self, queries: Embeddings, n: int) -> np.ndarray:
        """(Q, C) union of the retrieving heads' top-``n`` rows (hybrid rows), first occurrence
        kept in head order, -1 where a repeat or a missing hit was."""
        sources = [h for h in self.retrieve if h in self.components]
        if not sources:
            sources = ["multivector"] if "multivector" in self.components else list(self.components)[:1]
        maps = self._row_maps()
        parts = []
        for h in sources:
            rows, vals = self.components[h].search_rows(queries, n)
            rows = np.where(np.isfinite(vals) & (rows >= 0), rows, -1)
            m = maps[h]
            parts.append(rows if m is None else np.where(rows >= 0, m[0][np.maximum(rows, 0)], -1))
        cand = np.concatenate(parts, axis=1)
        order = np.argsort(cand, axis=1, kind="stable")
        srt = np.take_along_axis(cand, order, axis=1)
        dup = np.zeros(cand.shape, bool)
        dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
        repeat = np.zeros(cand.shape, bool)
        np.put_along_axis(repeat, order, dup, axis=1)
        return np.where(repeat, -1, cand)

    def score_rows(self, queries: Embeddings, cand: np.ndarray) -> dict[str, np.ndarray]:
        """head -> (Q, C) exact scores of the candidate rows (nan where -1)."""
        maps, out = self._row_maps(), {}
        for h, c in self.components.items():
            m = maps[h]
            rows = cand if m is None else np.where(cand >= 0, m[1][np.maximum(cand, 0)], -1)
            if hasattr(c, "score_rows"):
                out[h] = np.asarray(c.score_rows(queries, rows), np.float32)
            else:  # a backend without a row scorer: score by ids
                ids = [[c.idmap.ids[r] if r >= 0 else "" for r in row] for row in rows]
                out[h] = np.where(rows >= 0, np.asarray(c.score(queries, ids), np.float32), np.nan)
        return out

    def _fuse(
        self, fusion: str, head_scores: dict[str, np.ndarray], per_query: list[dict[str, float]]
    ) -> np.ndarray:
        """(Q, C) fused scores, one fusion call per distinct weight setting (usually one)."""
        fuse = FUSIONS.get(fusion)
        nq = len(per_query)
        c = next(iter(head_scores.values())).shape[1] if head_scores else 0
        fused = np.zeros((nq, c))
        groups: dict[tuple, list[int]] = {}
        for i, w in enumerate(per_query):
            groups.setdefault(tuple(sorted(w.items())), []).append(i)
        for w_items, qs in groups.items():
            sel = np.asarray(qs)
            if c:
                fused[sel] = fuse(
                    {h: s[sel] for h, s in head_scores.items()}, dict(w_items), rrf_k=self.rrf_k
                )
        return fused

    def search(
        self,
        queries: Embeddings,
        k: int = 10,
        weights: Weights | Sequence[Weights] = None,
        fusion: str | None = None,
        candidates: int | None = None,
    ) -> Hits:
        """Top-``k`` by fused score; ``Hits.per_head`` holds every head's exact score.

        Candidates, exact per-head scores and the fusion are (Q, C) arrays: one batched
        scorer call per head and one fusion call, no Python loop over hits.

        Args:
            queries: Embeddings with every component's head.
            weights: override for all queries (dict or 3-tuple), or a list with one
                override (or None) per query.
            fusion: a name in ``FUSIONS`` (default: the index's).
            candidates: candidates per retrieving head (default: the index's, at least k).
        """
        k = check_k(k)
        fusion = fusion or self.fusion
        FUSIONS.get(fusion)
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
        for w in per_query:
            if not any(w.get(h, 0.0) for h in self.heads):
                raise ConfigError(
                    f"weights {w} give 0 to every head this index has ({', '.join(self.heads)}), so nothing "
                    "would be ranked; give one of them a weight > 0"
                )
        cand = self.candidate_rows(queries, max(k, candidates or self.candidates))
        head_scores = self.score_rows(queries, cand)
        fused = np.where(cand >= 0, self._fuse(fusion, head_scores, per_query), -np.inf)
        order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(fused, order, axis=1)
        rows = np.take_along_axis(cand, order, axis=1)
        keep = np.isfinite(top)
        ids = self.idmap.ids
        per_head = {h: np.take_along_axis(s, order, axis=1) for h, s in head_scores.items()}
        return Hits(
            ids=[[ids[r] for r in rows[i][keep[i]]] for i in range(nq)],
            scores=[top[i][keep[i]].tolist() for i in range(nq)],
            per_head={h: [s[i][keep[i]].tolist() for i in range(nq)] for h, s in per_head.items()},
        )

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
        comps: dict[str, Any] = {h: load_index(_component_dir(d, h), mmap=mmap) for h in _components(d, manifest)}
        config = manifest.get("config") or {}
        bad = sorted(set(config) - {"retrieve", "candidates", "fusion", "weights", "rrf_k"})
        if bad:
            raise CheckpointError(
                f"{d / 'index.json'}: unknown config key(s) {', '.join(map(str, bad))} for a hybrid index; "
                "was it written by a newer embforge? rebuild it"
            )
        try:
            return cls(**comps, **config, meta=manifest.get("meta"))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{d / 'index.json'}: bad hybrid config ({e}); rebuild the index") from None


def _components(d: Path, manifest: dict[str, Any]) -> list[str]:
    comps = manifest.get("components", {})
    if not isinstance(comps, dict) or not all(isinstance(h, str) and h in HEADS for h in comps):
        raise CheckpointError(
            f"{d / 'index.json'}: 'components' must map head names ({', '.join(HEADS)}) to index kinds, "
            f"got {str(comps)[:80]}; rebuild the index"
        )
    return list(comps)


def _component_dir(d: Path, head: str) -> Path:
    """The component folder of ``head``; it must resolve inside ``d`` (no ``..``, no symlink out)."""
    sub = (d / head).resolve()
    if not sub.is_relative_to(d.resolve()):
        raise CheckpointError(f"{d / head} points outside the index folder {d}; refusing to load it")
    return sub
