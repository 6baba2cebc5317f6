"""NV-Embed pooling ablation: latent attention vs mean vs last-token (EOS), same budget.

A tiny random Llama-style decoder (no pretrained decoder can be downloaded here) is
trained from scratch with the ``nv-embed`` recipe -- bidirectional attention,
query instructions, stage 1 retrieval with in-batch + hard negatives, stage 2 blended
with STS-B pairs (score >= 4) and SNLI triples with in-batch negatives off -- once
per pooling, with the same seed, data, steps, batch size and learning rate. All
weights train (LoRA on a random backbone would only measure the adapters' rank).

Data: XQuAD-en from ../shared/data. Training questions come from the first 36 of
the 48 articles; evaluation uses the questions of the 12 held-out articles against
all 240 paragraphs (held-out paragraphs are new to the model, the others are
distractors). Metrics: nDCG@10, Recall@10, MRR@10 (embforge.eval.metrics).

    flock /tmp/embforge-bench.lock python bench/nv_embed_pooling.py [--steps1 80 --steps2 20 --seeds 0 1]

Writes bench/results/nv_embed_pooling.md; the last printed line is
``RESULT la_ndcg10=<x> mean_ndcg10=<y> eos_ndcg10=<z>`` (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("EMBFORGE_SHARED_DATA", "/work/shared/data"))
XQUAD = DATA / "xquad" / "xquad.en.json"
TRAIN_ARTICLES = 36
POOLINGS = ("latent_attention", "mean", "last_token")
TASK = "Given a question, retrieve passages that answer the question"


def split_xquad():
    """(number of training questions, eval corpus ids/texts, eval queries, qrels)."""
    from embforge.data.convert.squad import read_squad

    paras = read_squad(XQUAD)
    titles = list(dict.fromkeys(p.title for p in paras))
    train_titles = set(titles[:TRAIN_ARTICLES])
    n_train = sum(len(p.questions) for p in paras if p.title in train_titles)
    assert all(p.title in train_titles for p in paras[: sum(p.title in train_titles for p in paras)])
    doc_ids = [p.doc_id for p in paras]
    docs = [p.context for p in paras]
    queries, qrels = [], {}
    for p in paras:
        if p.title not in train_titles:
            for qid, text in p.questions:
                queries.append((qid, text))
                qrels[qid] = {p.doc_id: 1}
    return n_train, doc_ids, docs, queries, qrels


def config(pooling: str, seed: int, out: Path, n_train: int, args) -> dict:
    x = {"name": "xquad-en", "format": "xquad", "path": str(XQUAD), "limit": n_train, "instruction": TASK}
    sts = {
        "name": "stsb-en",
        "format": "sts",
        "path": str(DATA / "sts/stsb_en/sts-train.csv"),
        "instruction": "Retrieve semantically similar text",
        "symmetric": True,
    }
    nli = {
        "name": "snli",
        "format": "nli",
        "path": str(DATA / "nli/snli_esnli"),
        "split": "dev",
        "instruction": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    }
    common = {"batch_size": args.batch_size, "negatives": args.negatives, "schedule": {"warmup_ratio": 0.1}}
    return {
        "recipe": "nv-embed",
        "temperature": 0.05,
        "loop": {
            "output_dir": str(out),
            "seed": seed,
            "log_every": 10,
            "checkpoint_every": 0,
            "progress": False,
            "threads": args.threads,
        },
        "model": {
            "tiny_arch": "llama",
            "tiny_hidden_size": args.hidden,
            "tiny_layers": args.layers,
            "tiny_heads": 4,
            "pooling": pooling,
            "num_latents": args.latents,
            "num_heads": 8,
            "bidirectional": True,
            "task": TASK,
            "max_length": args.max_length,
            "lora": {"enabled": False},
        },
        "stages": [
            {
                "name": "retrieval",
                "in_batch_negatives": True,
                "steps": args.steps1,
                "sources": [x],
                "optim": {"lr": args.lr, "weight_decay": 0.01},
                **common,
            },
            {
                "name": "blend",
                "in_batch_negatives": False,
                "steps": args.steps2,
                "sources": [x, sts, nli],
                "optim": {"lr": args.lr / 2, "weight_decay": 0.01},
                **common,
            },
        ],
    }


def evaluate_model(model_dir: Path, doc_ids, docs, queries, qrels, max_length: int) -> dict:
    from embforge.eval.metrics import evaluate, run_from_scores
    from embforge.model.encoder import Encoder

    enc = Encoder.from_pretrained(str(model_dir))
    d = enc.encode(docs, role="document", max_length=max_length).dense
    q = enc.encode([t for _, t in queries], role="query", max_length=max_length).dense
    run = run_from_scores(q @ d.T, [i for i, _ in queries], doc_ids, k=100)
    m = evaluate(qrels, run, k_values=(1, 10, 100))
    return {
        "ndcg@10": m["ndcg@10"],
        "recall@10": m["recall@10"],
        "mrr@10": m["mrr@10"],
        "recall@100": m["recall@100"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps1", type=int, default=80)
    ap.add_argument("--steps2", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--negatives", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--latents", type=int, default=512)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on 2 shared cores ran 4x slower here
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nv_embed_pooling.md")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from embforge.config import build_config
    from embforge.train.recipes import RECIPES
    from embforge.train.recipes.nv_embed import NVEmbedConfig

    n_train, doc_ids, docs, queries, qrels = split_xquad()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for pooling in POOLINGS:
                out = Path(tmp) / f"{pooling}-{seed}"
                cfg = build_config(NVEmbedConfig, config(pooling, seed, out, n_train, args))
                t0 = time.perf_counter()
                res = RECIPES.get("nv-embed").run(cfg)
                train_s = time.perf_counter() - t0
                m = evaluate_model(out / "final", doc_ids, docs, queries, qrels, args.max_length)
                summ = json.loads((out / "summary.json").read_text())
                row = {
                    "pooling": pooling,
                    "seed": seed,
                    "train_s": round(train_s, 1),
                    "params": summ["trainable_params"],
                    "last_loss": res.log[-1]["loss"],
                    **m,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_report(rows, args, n_train, len(queries), len(docs))


def _mean(rows, pooling, key):
    return float(np.mean([r[key] for r in rows if r["pooling"] == pooling]))


def write_report(rows, args, n_train, n_queries, n_docs) -> None:
    cmd = "python bench/nv_embed_pooling.py " + " ".join(sys.argv[1:])
    lines = [
        "# NV-Embed pooling ablation (tiny decoder, same budget)",
        "",
        f"Command: `{cmd.strip()}` (normally under `flock /tmp/embforge-bench.lock`)",
        "",
        f"Model: random Llama-style decoder, hidden {args.hidden}, {args.layers} layers, 4 heads, MiniLM "
        f"WordPiece vocabulary, bidirectional; trained from scratch with the `nv-embed` recipe: stage 1 "
        f"{args.steps1} steps on XQuAD-en (in-batch + {args.negatives} same-article hard negatives), stage 2 "
        f"{args.steps2} steps on XQuAD-en + STS-B (score >= 4) + SNLI with in-batch negatives off; batch "
        f"{args.batch_size}, lr {args.lr} / {args.lr / 2}, tau 0.05, max_length {args.max_length}, "
        f"latent attention {args.latents} latents x 8 heads. All weights train (no LoRA: a random backbone).",
        f"Data: {n_train} training questions (first {TRAIN_ARTICLES} articles); evaluation: {n_queries} "
        f"questions of the 12 held-out articles against all {n_docs} paragraphs.",
        f"Machine: 2 CPU cores shared with 7 other engineers' jobs (train_s is wall time under that load; "
        f"{args.threads} torch threads); seeds: {args.seeds}.",
        "",
        "| pooling | seed | nDCG@10 | Recall@10 | MRR@10 | Recall@100 | final loss | trainable params | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['pooling']} | {r['seed']} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['mrr@10']:.4f} | "
            f"{r['recall@100']:.4f} | {r['last_loss']:.4f} | {r['params']:,} | {r['train_s']} |"
        )
    if len(args.seeds) > 1:
        lines += [
            "",
            "Mean over seeds:",
            "",
            "| pooling | nDCG@10 | Recall@10 | MRR@10 |",
            "| --- | --- | --- | --- |",
        ]
        for p in POOLINGS:
            lines.append(
                f"| {p} | {_mean(rows, p, 'ndcg@10'):.4f} | {_mean(rows, p, 'recall@10'):.4f} | "
                f"{_mean(rows, p, 'mrr@10'):.4f} |"
            )
    res = (
        f"RESULT la_ndcg10={_mean(rows, 'latent_attention', 'ndcg@10'):.4f} "
        f"mean_ndcg10={_mean(rows, 'mean', 'ndcg@10'):.4f} eos_ndcg10={_mean(rows, 'last_token', 'ndcg@10'):.4f}"
    )
    lines += ["", res, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(res)


if __name__ == "__main__":
    main()
