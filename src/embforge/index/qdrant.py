"""Qdrant as the index backend for scale: one point per document with three named vectors.

``dense`` (cosine; optional scalar int8 or binary quantization), ``sparse`` (token ids and
weights: a dot product, the BGE-M3 lexical score) and ``multivector`` (token vectors with the
MaxSim comparator, no HNSW graph: a re-ranker), payload ``id``/``title``/``text``. Point ids are
UUIDv5 of the document ids, so ingesting twice upserts the same points (idempotent).

Search follows BGE-M3's hybrid retrieval (Chen et al., 2024, "BGE M3-Embedding") on Qdrant's
Query API: one request per query with a dense and a sparse *prefetch* (the candidates) and the
multi-vector MaxSim as the re-ranking query; then the exact dense and sparse scores of those
candidates (a ``has_id`` filter), and the fusion of ``embforge.scoring.FUSIONS`` (weighted
1/0.3/1 or RRF) over the (Q, C) score arrays, as ``HybridIndex`` fuses them. Qdrant's MaxSim is
a sum over query tokens; it is divided by the query's token count to give embforge's MaxSim
(Khattab & Zaharia, 2020). So ``Hits.per_head`` equals a ``HybridIndex`` over the same vectors.

Embedded mode (``QdrantClient(path=INDEX_DIR/qdrant)``) is the default; ``url=`` talks to a
Qdrant server or cluster. ``index.json`` in the index folder records the collection and the
connection, so ``load_index`` (``embforge search/eval/serve --index``) opens it like any index.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embforge.errors import CheckpointError, ConfigError, DataError
from embforge.index.base import INDEXES, BaseIndex, check_k
from embforge.index.hybrid import Weights, _weights
from embforge.index.storage import MANIFEST, write_manifest
from embforge.scoring.fusion import DEFAULT_WEIGHTS, FUSIONS, RRF_K
from embforge.types import HEADS, Embeddings, Hits

__all__ = ["QdrantIndex", "QUANTIZATIONS", "point_id"]

logger = logging.getLogger("embforge")
QUANTIZATIONS = ("none", "scalar", "binary")
_NAMESPACE = uuid.UUID("6f1c8f5e-7a0b-4c43-9a57-2f2f0c8f1e17")
_CLIENTS: dict[str, Any] = {}  # embedded storage path -> client (Qdrant locks a folder per client)


def point_id(doc_id: str) -> str:
    """The Qdrant point id of a document: UUIDv5 of its id (the same id on every ingest)."""
    return str(uuid.uuid5(_NAMESPACE, str(doc_id)))


def _client(path: str | None, url: str | None, api_key: str | None = None) -> Any:
    from qdrant_client import QdrantClient  # optional dependency: pip install embforge[qdrant]

    if url:
        return QdrantClient(url=url, api_key=api_key or os.environ.get("QDRANT_API_KEY"))
    key = str(Path(str(path)).resolve())
    if key not in _CLIENTS:
        _CLIENTS[key] = QdrantClient(path=key)
        atexit.register(_CLIENTS[key].close)  # before interpreter teardown (its __del__ fails there)
    return _CLIENTS[key]


def _retry(fn: Callable[[], Any], what: str, tries: int = 4) -> Any:
    """``fn()`` with exponential back-off on connection/server errors (a Qdrant cluster under load)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    for attempt in range(tries):
        try:
            return fn()
        except (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError) as e:
            if attempt == tries - 1:
                raise DataError(
                    f"Qdrant {what} failed {tries} times ({str(e)[:160]}); is the server up?"
                ) from None
            time.sleep(0.5 * 2**attempt)
    return None  # unreachable


@INDEXES.register("qdrant")
class QdrantIndex(BaseIndex):
    """Dense + sparse + multi-vector documents in one Qdrant collection (see the module docstring).

    Args:
        heads: the heads stored (named vectors of the collection).
        collection: the collection name.
        path: embedded storage folder (default: ``qdrant/`` inside the index folder).
        url: a Qdrant server or cluster (then ``path`` is unused).
        quantization: dense quantization: none, scalar (int8) or binary (rescored by Qdrant).
        retrieve, candidates, fusion, weights, rrf_k: as ``HybridIndex``.
        batch_size: points per upsert request.
        meta: saved with the index (the encoder that made it).
    """

    kind = "qdrant"

    def __init__(
        self,
        heads: Sequence[str] = ("dense",),
        collection: str = "embforge",
        path: str | None = None,
        url: str | None = None,
        quantization: str = "none",
        retrieve: Sequence[str] = ("dense", "sparse"),
        candidates: int = 100,
        fusion: str = "weighted",
        weights: Weights = None,
        rrf_k: int = RRF_K,
        batch_size: int = 256,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        bad = [h for h in (*heads, *retrieve) if h not in HEADS]
        if bad or not heads:
            raise ConfigError(f"unknown head {bad[0] if bad else ''!r}; choose from: {', '.join(HEADS)}")
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"--quantization {quantization!r}; choose from: {', '.join(QUANTIZATIONS)}")
        FUSIONS.get(fusion)
        self._heads = tuple(h for h in HEADS if h in heads)  # canonical order, as HybridIndex's components
        self.collection, self.url = collection, url
        self.path = path
        self.quantization, self.retrieve, self.candidates = quantization, tuple(retrieve), int(candidates)
        self.fusion, self.rrf_k, self.batch_size = fusion, int(rrf_k), int(batch_size)
        self.weights = None if weights is None else _weights(weights, DEFAULT_WEIGHTS)
        self.meta: dict[str, Any] = dict(meta or {})
        self._client: Any = None

    @property
    # the stored heads are per instance: an instance property replaces BaseIndex's ClassVar
    def heads(self) -> tuple[str, ...]:  # type: ignore[override]  # see above
        return self._heads

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.url is None and self.path is None:
                raise ConfigError(
                    "QdrantIndex needs path= (embedded storage folder) or url= (a Qdrant server)"
                )
            self._client = _client(self.path, self.url)
        return self._client

    def __len__(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return int(self.client.count(self.collection, exact=True).count)

    # ---- writing ------------------------------------------------------------------
    def _create(self, emb: Embeddings) -> None:
        from qdrant_client import models as m

        if self.client.collection_exists(self.collection):
            return
        vectors: dict[str, Any] = {}
        if "dense" in self._heads:
            quant = {
                "none": None,
                "scalar": m.ScalarQuantization(
                    scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True)
                ),
                "binary": m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True)),
            }[self.quantization]
            dim = _field(emb, "dense").shape[1]
            vectors["dense"] = m.VectorParams(size=dim, distance=m.Distance.COSINE, quantization_config=quant)
        if "multivector" in self._heads:
            mv = _field(emb, "multivector")
            vectors["multivector"] = m.VectorParams(
                size=mv[0].shape[1] if len(mv) else 1,
                distance=m.Distance.DOT,  # embforge's token vectors are unit length already
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                hnsw_config=m.HnswConfigDiff(m=0),  # a re-ranker: no graph to build
                datatype=m.Datatype.FLOAT16,
            )
        sparse = {"sparse": m.SparseVectorParams()} if "sparse" in self._heads else None
        self.client.create_collection(self.collection, vectors_config=vectors, sparse_vectors_config=sparse)

    def add(
        self, ids: Sequence[str], vectors: Embeddings, payloads: Sequence[dict[str, Any]] | None = None
    ) -> None:
        """Upsert documents (batched, retried); the same id replaces its point. ``payloads``: one
        dict per document (``id`` is always set; ``title``/``text`` from the shards)."""
        from qdrant_client import models as m

        if not isinstance(vectors, Embeddings):
            raise DataError(
                f"QdrantIndex.add needs Embeddings with heads {self.heads}, got {type(vectors).__name__}"
            )
        ids = self.idmap.check_new(ids, len(vectors), "embeddings")
        for h in self._heads:
            _field(vectors, h)
        self._create(vectors)
        for a in range(0, len(ids), self.batch_size):
            points = [
                m.PointStruct(
                    id=point_id(ids[i]),
                    vector=_point_vectors(vectors, i, self._heads),
                    payload={**(payloads[i] if payloads is not None else {}), "id": ids[i]},
                )
                for i in range(a, min(len(ids), a + self.batch_size))
            ]
            self._upsert(points)

    def _upsert(self, points: list[Any]) -> None:
        _retry(lambda: self.client.upsert(self.collection, points=points, wait=True), "upsert")

    def delete(self, ids: Sequence[str]) -> int:
        from qdrant_client import models as m

        if not ids or not self.client.collection_exists(self.collection):
            return 0
        before = len(self)
        sel = m.PointIdsList(points=[point_id(i) for i in ids])
        _retry(lambda: self.client.delete(self.collection, points_selector=sel, wait=True), "delete")
        return before - len(self)

    # ---- search -------------------------------------------------------------------
    def _requests(self, queries: Embeddings, i: int, n: int) -> list[Any]:
        """The Query API request of query ``i``: dense/sparse prefetch -> multi-vector re-rank
        (or, without a multi-vector head, the union of the prefetches by Qdrant's RRF)."""
        from qdrant_client import models as m

        src = [h for h in self.retrieve if h in self._heads and h != "multivector"]
        pre = [m.Prefetch(query=_query_vector(queries, h, i), using=h, limit=n) for h in src]
        if "multivector" in self._heads:
            q = _query_vector(queries, "multivector", i)
            return [
                m.QueryRequest(prefetch=pre or None, query=q, using="multivector", limit=n * max(1, len(pre)))
            ]
        if len(pre) == 1:
            p = pre[0]
            return [m.QueryRequest(query=p.query, using=p.using, limit=n)]
        return [m.QueryRequest(prefetch=pre, query=m.FusionQuery(fusion=m.Fusion.RRF), limit=n * len(pre))]

    def _exact(self, queries: Embeddings, i: int, cand: list[str], head: str) -> Any:
        from qdrant_client import models as m

        flt = m.Filter(must=[m.HasIdCondition(has_id=list[int | str | uuid.UUID](cand))])
        return m.QueryRequest(query=_query_vector(queries, head, i), using=head, filter=flt, limit=len(cand))

    def candidates_and_scores(
        self, queries: Embeddings, n: int
    ) -> tuple[list[list[str]], dict[str, np.ndarray]]:
        """Candidate point ids per query and head -> (Q, C) exact scores (nan where padded)."""
        nq = len(queries)
        first = _retry(
            lambda: self.client.query_batch_points(
                self.collection, [r for i in range(nq) for r in self._requests(queries, i, n)]
            ),
            "query",
        )
        cand = [[str(p.id) for p in resp.points] for resp in first]
        width = max((len(c) for c in cand), default=0)
        scores = {h: np.full((nq, width), np.nan, np.float32) for h in self._heads}
        col = [{pid: j for j, pid in enumerate(c)} for c in cand]
        if "multivector" in self._heads:
            ntok = [max(1, len(_query_vector(queries, "multivector", i))) for i in range(nq)]
            for i, resp in enumerate(first):
                scores["multivector"][i, : len(cand[i])] = [p.score / ntok[i] for p in resp.points]
        rest = [h for h in self._heads if h != "multivector"]
        reqs = [(i, h) for i in range(nq) for h in rest if cand[i]]
        if reqs:
            got = _retry(
                lambda: self.client.query_batch_points(
                    self.collection, [self._exact(queries, i, cand[i], h) for i, h in reqs]
                ),
                "query",
            )
            for (i, h), resp in zip(reqs, got):
                row = scores[h][i]
                row[: len(cand[i])] = 0.0  # a sparse candidate sharing no term scores 0 (it is not returned)
                for p in resp.points:
                    row[col[i][str(p.id)]] = p.score
        return cand, scores

    def search(
        self,
        queries: Embeddings,
        k: int = 10,
        weights: Weights | Sequence[Weights] = None,
        fusion: str | None = None,
        candidates: int | None = None,
    ) -> Hits:
        """Top-``k`` by fused score with every head's score in ``Hits.per_head`` (as ``HybridIndex.search``)."""
        k = check_k(k)
        fusion = fusion or self.fusion
        fuse = FUSIONS.get(fusion)
        if not isinstance(queries, Embeddings):
            raise DataError(
                f"QdrantIndex.search needs Embeddings with heads {self.heads}, got {type(queries).__name__}"
            )
        nq = len(queries)
        per_query = _per_query_weights(weights, self._base_weights(fusion), nq)
        cand, head_scores = self.candidates_and_scores(queries, max(k, candidates or self.candidates))
        valid = np.zeros((nq, max((len(c) for c in cand), default=0)), bool)
        for i, c in enumerate(cand):
            valid[i, : len(c)] = True
        fused = np.full(valid.shape, -np.inf)
        for i in range(nq):
            if valid.shape[1]:
                row = fuse({h: s[i : i + 1] for h, s in head_scores.items()}, per_query[i], rrf_k=self.rrf_k)
                fused[i] = np.where(valid[i], np.asarray(row)[0], -np.inf)
        order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(fused, order, axis=1)
        keep = np.isfinite(top)
        names = self._payload_ids([pid for c in cand for pid in c])
        return Hits(
            ids=[[names[cand[i][j]] for j in order[i][keep[i]]] for i in range(nq)],
            scores=[top[i][keep[i]].tolist() for i in range(nq)],
            per_head={
                h: [np.take_along_axis(s, order, axis=1)[i][keep[i]].tolist() for i in range(nq)]
                for h, s in head_scores.items()
            },
        )

    def _base_weights(self, fusion: str) -> dict[str, float]:
        if self.weights is not None:
            return self.weights
        return dict.fromkeys(HEADS, 1.0) if fusion == "rrf" else dict(DEFAULT_WEIGHTS)

    def _payload_ids(self, pids: list[str]) -> dict[str, str]:
        """Point id -> document id (from the payload)."""
        uniq = list(dict.fromkeys(pids))
        if not uniq:
            return {}
        pts = _retry(lambda: self.client.retrieve(self.collection, ids=uniq, with_payload=["id"]), "retrieve")
        return {str(p.id): str(p.payload["id"]) for p in pts}

    # ---- persistence --------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "heads": list(self._heads),
            "collection": self.collection,
            "url": self.url,
            "quantization": self.quantization,
            "retrieve": list(self.retrieve),
            "candidates": self.candidates,
            "fusion": self.fusion,
            "weights": self.weights,
            "rrf_k": self.rrf_k,
            "batch_size": self.batch_size,
        }

    def _write(self, d: Path) -> None:
        write_manifest(d, self.kind, self.config(), count=len(self), meta=self.meta)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``index.json`` into ``path`` (the points live in Qdrant: in ``path/qdrant`` when embedded)."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{MANIFEST}.tmp-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        self._write(tmp)
        os.replace(tmp / MANIFEST, d / MANIFEST)
        tmp.rmdir()
        return d

    @classmethod
    def open(cls, path: str | os.PathLike, **kw: Any) -> QdrantIndex:
        """A new (or re-opened) index whose embedded storage is ``path/qdrant`` (unless ``url=``)."""
        return cls(path=None if kw.get("url") else str(Path(path) / "qdrant"), **kw)

    @classmethod
    def _read(cls, d: Path, manifest: dict[str, Any], mmap: bool) -> QdrantIndex:
        config = dict(manifest.get("config") or {})
        allowed = {
            "heads",
            "collection",
            "url",
            "quantization",
            "retrieve",
            "candidates",
            "fusion",
            "weights",
        }
        allowed |= {"rrf_k", "batch_size"}
        bad = sorted(set(config) - allowed)
        if bad:
            raise CheckpointError(
                f"{d / MANIFEST}: unknown config key(s) {', '.join(map(str, bad))} for a qdrant index"
            )
        if not config.get("url") and not (d / "qdrant").is_dir():
            raise CheckpointError(
                f"{d}: the embedded Qdrant storage {d / 'qdrant'} is missing; rebuild the index"
            )
        try:
            return cls.open(d, **config, meta=manifest.get("meta"))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{d / MANIFEST}: bad qdrant config ({e}); rebuild the index") from None


def _field(emb: Embeddings, head: str) -> Any:
    value = getattr(emb, head)
    if value is None:
        raise DataError(f"the Embeddings have no {head!r} head; encode with heads=(..., {head!r}, ...)")
    return value


def _query_vector(emb: Embeddings, head: str, i: int) -> Any:
    from qdrant_client import models as m

    if head == "dense":
        return np.asarray(_field(emb, "dense")[i], np.float32).tolist()
    if head == "sparse":
        sp = _field(emb, "sparse")
        a, b = int(sp.indptr[i]), int(sp.indptr[i + 1])
        return m.SparseVector(indices=sp.indices[a:b].tolist(), values=sp.values[a:b].tolist())
    return np.asarray(_field(emb, "multivector")[i], np.float32).tolist()


def _point_vectors(emb: Embeddings, i: int, heads: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for h in heads:
        v = _query_vector(emb, h, i)
        if h == "sparse" and not v.indices:
            continue  # Qdrant refuses an empty sparse vector; the document has no lexical terms
        out[h] = v
    return out


def _per_query_weights(weights: Any, base: dict[str, float], nq: int) -> list[dict[str, float]]:
    if isinstance(weights, (list, tuple)) and weights and not isinstance(weights[0], (int, float)):
        if len(weights) != nq:
            raise ConfigError(f"got {len(weights)} per-query weight overrides for {nq} queries")
        return [_weights(w, base) for w in weights]
    return [_weights(weights, base)] * nq


def describe(path: str | os.PathLike) -> str:
    """One line about a saved Qdrant index (for the CLI)."""
    m = json.loads((Path(path) / MANIFEST).read_text())
    where = m["config"].get("url") or str(Path(path) / "qdrant")
    return f"qdrant collection {m['config']['collection']!r} at {where}: {m.get('count')} points"
