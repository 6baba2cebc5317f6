"""Issue 13 follow-up: the ablation's models re-evaluated at a longer token limit (``--eval-max-length``).

The ablation in quality.md encodes queries and documents at 128 tokens while its BM25 baseline reads
whole documents; XQuAD paragraphs are 150-700 model tokens, so every neural head was handicapped.
``bench/quality.py --models-from OLD_WORKDIR --eval-max-length 512`` evaluates the same trained models
(no retraining) at the bundled model's position limit; this script summarises those stage files.

Usage: ``python bench/quality_eval_length.py WORKDIR [OUT.md]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HEADS = ("dense", "sparse", "multivector", "hybrid")
VARIANTS = (("base", "base model, no training"), ("st", "(a) sentence-transformers MNRL"),
            ("m3_nodistill", "(c) M3 without self-distillation"), ("m3", "(d) M3 with self-distillation"),
            ("m3_idf", "(f) M3 + IDF-fit sparse init"),
            ("m3_tf", "(g) (f) + max_tf sparse aggregation"),
            ("m3_terms", "(h) (g) + per-term IDF sparse weights"))  # fmt: skip


def _retrieval(path: Path) -> dict:
    return json.loads(path.read_text())["result"]["retrieval"]


def summarise(work: Path) -> list[str]:
    base = _retrieval(work / "base.json")
    sets = list(base)
    nonen = [s for s in sets if s.startswith("xquad") and s != "xquad-en"]
    bm = {s: base[s]["heads"]["bm25"]["ndcg@10"] for s in sets}
    out = ["| variant | seeds | dense | sparse | multivector | hybrid 1/0.3/1 | sparse dbpedia | sparse non-En "
           "XQuAD | sets where hybrid < best head |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    means = {}
    for v, label in VARIANTS:
        files = [work / "base.json"] if v == "base" else sorted(work.glob(f"{v}-s[0-9].json"))
        if not files:
            continue
        runs = [_retrieval(f) for f in files]
        m = {h: np.array([[r[s]["heads"][h]["ndcg@10"] for s in sets] for r in runs]) for h in HEADS}
        per_set = {h: m[h].mean(0) for h in HEADS}
        fails = [
            s for i, s in enumerate(sets) if per_set["hybrid"][i] < max(per_set[h][i] for h in HEADS[:3])
        ]
        cells = [f"{m[h].mean(1).mean():.4f} ± {m[h].mean(1).std():.4f}" for h in HEADS]
        db = m["sparse"][:, sets.index("dbpedia")].mean()
        ne = m["sparse"][:, [sets.index(s) for s in nonen]].mean(1).mean()
        out.append(
            f"| {label} | {len(files)} | " + " | ".join(cells) + f" | {db:.4f} | {ne:.4f} | {len(fails)}/13 |"
        )
        means[v] = {h: float(m[h].mean()) for h in HEADS}
    rrf = json.loads((work / "base.json").read_text())["result"]["dense_bm25_rrf"]
    out += ["", f"BM25 (model tokenizer, whole documents): mean {np.mean(list(bm.values())):.4f}, dbpedia "
            f"{bm['dbpedia']:.4f}, non-English XQuAD {np.mean([bm[s] for s in nonen]):.4f}; dense+BM25 RRF mean "
            f"{np.mean(list(rrf.values())):.4f}.", ""]  # fmt: skip
    d = means.get("m3", {})
    tail = ""
    for v in ("m3_tf", "m3_terms"):  # the sparse-head variants' own fields
        files = sorted(work.glob(f"{v}-s[0-9].json"))
        if not files:
            continue
        g = {s: np.mean([_retrieval(f)[s]["heads"]["sparse"]["ndcg@10"] for f in files]) for s in sets}
        tail += (
            f" {v}_sparse_ndcg10={np.mean(list(g.values())):.4f} {v}_sparse_dbpedia={g['dbpedia']:.4f} "
            f"{v}_sparse_nonen={np.mean([g[s] for s in nonen]):.4f}"
        )
    out.append(
        f"RESULT eval_max_length=512 m3_dense_ndcg10={d.get('dense', float('nan')):.4f} "
        f"m3_sparse_ndcg10={d.get('sparse', float('nan')):.4f} m3_multivector_ndcg10={d.get('multivector', float('nan')):.4f} "
        f"m3_hybrid_ndcg10={d.get('hybrid', float('nan')):.4f} bm25_ndcg10={np.mean(list(bm.values())):.4f}"
        f"{tail} bm25_dbpedia={bm['dbpedia']:.4f} bm25_nonen={np.mean([bm[s] for s in nonen]):.4f}"
    )
    return out


if __name__ == "__main__":
    lines = summarise(Path(sys.argv[1]))
    print("\n".join(lines))
