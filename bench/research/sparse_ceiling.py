"""Issue 13: how far can a max-pooled lexical head go? Oracle term weights (no model) vs BM25.

Scores every quality.py retrieval set with hand-set term weights on the model tokenizer, documents cut at
MAX_LENGTH tokens as the neural heads are: shared-term count (the untrained head), IDF squared with one
weight per distinct term (the best a max-pooled BGE-M3 head can express without term frequency), IDF x
term-frequency forms, and BM25 on whole documents. Usage:
``python bench/research/sparse_ceiling.py MAX_LENGTH QUALITY_WORKDIR [ROW,ROW...]``.
"""
# ruff: noqa: B023 (each lambda is called inside its own loop iteration)

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))
from transformers import AutoTokenizer  # noqa: E402

import quality as Q  # noqa: E402
from embforge.eval import metrics as M  # noqa: E402
from embforge.eval.runner import bm25_run  # noqa: E402

work = Path(sys.argv[2])
a = json.load(open(work / "quality.json"))["args"][-1]["args"]
args = argparse.Namespace(**a)
retrieval, _, _ = Q.eval_sets(args, work)
tok = AutoTokenizer.from_pretrained(Q.base_model())
special = set(tok.all_special_ids)


def ids(t, ml=int(sys.argv[1])):
    return [i for i in tok(t, truncation=True, max_length=ml)["input_ids"] if i not in special]


recs = [json.loads(x) for x in (work / "mix" / "train.jsonl").read_text().splitlines() if x]
train_docs = list(dict.fromkeys(t for r in recs for t in (*r["pos"], *r["neg"])))


def idf_of(docs):
    df = {}
    for d in docs:
        for t in set(ids(d)):
            df[t] = df.get(t, 0) + 1
    n = len(docs)
    return lambda t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5))


idf_tr = idf_of(train_docs)
avg_train = float(np.mean([len(ids(d)) for d in train_docs]))
print("train docs", len(train_docs), "mean length", round(avg_train, 1))


def ndcg(ds, score):
    run = {}
    dsets = [set(ids(d)) for d in ds.doc_texts]
    dlist = [ids(d) for d in ds.doc_texts]
    for qid, qt in zip(ds.query_ids, ds.query_texts):
        qs = set(ids(qt))
        s = np.array([score(qs, dsets[j], dlist[j]) for j in range(len(dsets))])
        top = np.argsort(-s, kind="stable")[:100]
        run[qid] = {ds.doc_ids[j]: float(s[j]) for j in top}
    return M.evaluate(ds.qrels, run, (10,))["ndcg@10"]


rows = {}
for ds in retrieval:
    idf_ev = idf_of(ds.doc_texts)
    avg = np.mean([len(ids(d)) for d in ds.doc_texts])

    def bm25d(t, dl, k1=1.2, b=0.75):
        tf = dl.count(t)
        return tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(dl) / avg))

    def bm25_fixed(t, dl, k1=1.2, b=0.75):
        """BM25's TF part with the TRAINING documents' mean length in place of this corpus's: what a
        model can carry (a constant in its config) without seeing the corpus it is used on."""
        tf = dl.count(t)
        return tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(dl) / avg_train))

    def sat(t, dl, k1=1.2):
        """BM25's saturation without its length normalisation (b = 0): 1 at tf = 1."""
        tf = dl.count(t)
        return tf * (k1 + 1) / (tf + k1)

    rows_wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    forms = {
        "count": lambda q, d, dl: len(q & d),
        "count_tf": lambda q, d, dl: sum(dl.count(t) for t in q & d),
        "idf_eval^2": lambda q, d, dl: sum(idf_ev(t) ** 2 for t in q & d),
        "idf_train^2": lambda q, d, dl: sum(idf_tr(t) ** 2 for t in q & d),
        "idf_train*tf": lambda q, d, dl: sum(idf_tr(t) ** 2 * dl.count(t) for t in q & d),
        "idf_train*log1p(tf)": lambda q, d, dl: sum(idf_tr(t) ** 2 * math.log1p(dl.count(t)) for t in q & d),
        "splade_log1p(idf*tf)": lambda q, d, dl: sum(
            math.log1p(idf_tr(t)) * dl.count(t) * math.log1p(idf_tr(t)) for t in q & d
        ),
        "idf_train^2*sat(tf)": lambda q, d, dl: sum(idf_tr(t) ** 2 * sat(t, dl) for t in q & d),
        "idf_train^2*bm25tf": lambda q, d, dl: sum(idf_tr(t) ** 2 * bm25d(t, dl) for t in q & d),
        "idf_train^2*bm25tf_fixed": lambda q, d, dl: sum(idf_tr(t) ** 2 * bm25_fixed(t, dl) for t in q & d),
        "idf_train*bm25tf": lambda q, d, dl: sum(idf_tr(t) * bm25d(t, dl) for t in q & d),
        "idf_eval*bm25tf": lambda q, d, dl: sum(idf_ev(t) * bm25d(t, dl) for t in q & d),
    }
    r = {k: ndcg(ds, f) for k, f in forms.items() if rows_wanted is None or k in rows_wanted}
    bm = bm25_run(tok.tokenize, ds, len(ds.doc_ids))
    r["BM25"] = M.evaluate(ds.qrels, bm, (10,))["ndcg@10"]
    rows[ds.name] = r
    print(ds.name, {k: round(v, 3) for k, v in r.items()}, flush=True)
keys = list(next(iter(rows.values())))
nonen = [n for n in rows if n.startswith("xquad") and n != "xquad-en"]
for k in keys:
    print(
        f"{k:20s} mean {np.mean([rows[n][k] for n in rows]):.4f} nonEn {np.mean([rows[n][k] for n in nonen]):.4f} dbpedia {rows['dbpedia'][k]:.4f}"
    )
