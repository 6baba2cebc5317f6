"""The short demo behind ``embforge demo --quick``: encode a bundled corpus, search it, report quality.

Bundled data: XQuAD English paragraphs and questions (read by ``embforge.data.bundled``). The
full quickstart (mine, fine-tune, compare) is ``embforge.quickstart``; ``run_demo`` returns its
numbers so callers and tests can check them. Scores: dense inner product, lexical matching and
MaxSim as in BGE-M3 (Chen et al., 2024, "BGE M3-Embedding: Multi-Lingual, Multi-Functionality,
Multi-Granularity Text Embeddings Through Self-Knowledge Distillation"), from ``embforge.scoring``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from embforge.data.bundled import demo_dir, load_demo_corpus
from embforge.model.encoder import Encoder
from embforge.scoring import hybrid_scores, multivector_list_scores, sparse_vector_scores

__all__ = ["demo_dir", "load_demo_corpus", "run_demo"]


def _rank_metrics(scores: np.ndarray, doc_ids: list[str], queries: list[dict], qrels) -> dict[str, float]:
    top = np.argsort(-scores, axis=1)[:, :10]
    acc, mrr = [], []
    for qi, q in enumerate(queries):
        rel = qrels[q["_id"]]
        ranks = [r for r, j in enumerate(top[qi]) if doc_ids[j] in rel]
        acc.append(1.0 if ranks and ranks[0] == 0 else 0.0)
        mrr.append(1.0 / (ranks[0] + 1) if ranks else 0.0)
    return {"acc@1": float(np.mean(acc)), "mrr@10": float(np.mean(mrr))}


def run_demo(
    model: str | None = None,
    name: str = "xquad-en",
    max_queries: int = 200,
    heads: tuple[str, ...] = ("dense", "sparse", "multivector"),
    examples: int = 3,
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Encode the bundled corpus, search it with every head and the hybrid, print and return metrics."""
    docs, queries, qrels = load_demo_corpus(name)
    queries = queries[:max_queries]
    enc = Encoder.from_pretrained(model, heads=heads)
    echo(f"model: {model or 'bundled all-MiniLM-L6-v2'}  heads: {', '.join(heads)}")
    echo(f"corpus: {name} ({len(docs)} passages, {len(queries)} questions)")
    t0 = time.perf_counter()
    d = enc.encode(
        [x["title"].replace("_", " ") + ": " + x["text"] for x in docs], role="document", heads=heads
    )
    q = enc.encode([x["text"] for x in queries], role="query", heads=heads)
    dt = time.perf_counter() - t0
    n_tok = sum(int(e.num_tokens.sum()) for e in (d, q) if e.num_tokens is not None)
    echo(
        f"encoded {len(docs) + len(queries)} texts ({n_tok} tokens) in {dt:.1f}s on {torch.get_num_threads()} threads"
    )
    scores = {}
    if d.dense is not None and q.dense is not None:
        scores["dense"] = q.dense @ d.dense.T
    if d.sparse is not None and q.sparse is not None:
        scores["sparse"] = sparse_vector_scores(q.sparse, d.sparse)
    if d.multivector is not None and q.multivector is not None:
        scores["multivector"] = multivector_list_scores(q.multivector, d.multivector)
    if len(scores) > 1:
        scores["hybrid"] = hybrid_scores(scores.get("dense"), scores.get("sparse"), scores.get("multivector"))
    ids = [x["_id"] for x in docs]
    results = {k: _rank_metrics(v, ids, queries, qrels) for k, v in scores.items()}
    echo("\nhead          acc@1   MRR@10")
    for k, m in results.items():
        echo(f"{k:<12}  {m['acc@1']:.3f}   {m['mrr@10']:.3f}")
    best = "hybrid" if "hybrid" in scores else next(iter(scores))
    echo(f"\nexample searches ({best}):")
    for qi in range(min(examples, len(queries))):
        j = int(np.argmax(scores[best][qi]))
        ok = "correct" if ids[j] in qrels[queries[qi]["_id"]] else "wrong"
        echo(f"  Q: {queries[qi]['text']}\n     -> [{ok}] {docs[j]['title']}: {docs[j]['text'][:90]}...")
    return results
