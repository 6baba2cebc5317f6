"""The full quickstart behind ``embforge demo`` / ``make demo``.

On the bundled XQuAD data (``resources/demo``; English, German, Spanish; questions of 36
articles for training, the other 12 articles held apart for evaluation) and the bundled
all-MiniLM-L6-v2:

1. evaluate the base model: dense, sparse, multi-vector, hybrid and BM25 (same tokenizer),
   plus the Matryoshka curve, on the held-apart questions;
2. mine hard negatives for the training questions with TopK-PercPos (NV-Retriever);
3. fine-tune with the M3 recipe (self-knowledge distillation over the three heads), then
   choose the hybrid's fusion on a dev split of held-out training questions
   (``embforge tune-fusion``: the paper's weighted 1,0.3,1 unless the dev gain beats 0.01);
4. evaluate the fine-tuned model on the same held-apart questions;
5. build a hybrid index of the English corpus, save it, load it back, run example searches;
6. print a before/after table and write ``report.json`` / ``report.md`` with plots.

Every stage prints what it does and how long it took; ``run_quickstart`` returns the
numbers so tests can check them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from embforge.atomic import atomic_write_text
from embforge.config import build_config
from embforge.data.bundled import DEMO_ROOT
from embforge.data.io import read_corpus
from embforge.data.mining import CorpusIndex, MiningConfig, MiningStats, mine, queries_from_beir
from embforge.data.teachers import EncoderTeacher
from embforge.errors import DataError
from embforge.eval.datasets import RetrievalSet, load_beir
from embforge.eval.report import build_report, write_report
from embforge.eval.runner import evaluate_all
from embforge.eval.tune import score_matrices, tune_fusion_sets
from embforge.index import HybridIndex
from embforge.index.base import load_index
from embforge.index.dense import ExactDenseIndex
from embforge.index.multivector import MultiVectorIndex
from embforge.index.sparse import SparseIndex
from embforge.model.encoder import Encoder
from embforge.model.fusion import write_fusion
from embforge.train.recipes import RECIPES

__all__ = ["QuickstartConfig", "run_quickstart", "DEMO_ROOT"]


@dataclass
class QuickstartConfig:
    """Settings of the quickstart (defaults sized for 2 CPU cores; docs/eval.md has measured times).

    Attributes:
        model: base model directory or hub id; None = the bundled all-MiniLM-L6-v2.
        languages: bundled XQuAD languages to use (en, de, es).
        out_dir: where the mined data, the fine-tuned model, the index and the report go.
        max_eval_queries: held-apart questions evaluated per language (None = all 296).
        max_train_queries: training questions mined per language (None = all 894).
        steps: optimizer steps of the fine-tuning.
        batch_size: queries per step (each with its positive and ``n_negatives`` negatives).
        n_negatives: mined hard negatives per query (TopK-PercPos).
        perc_pos: TopK-PercPos threshold: drop candidates scoring above perc_pos * positive.
        lr: peak learning rate.
        temperature: InfoNCE temperature of the M3 loss.
        matryoshka_dims: extra dense truncation dims trained with the M3 loss (dims not below
            the model's dense size are skipped).
        query_max_length, doc_max_length: token limits while mining and training.
        eval_max_length: token limit of the documents while evaluating, tuning the fusion and
            indexing; None = the model's own limit (512 for the bundled model), so the heads read
            what BM25 reads (XQuAD paragraphs are 150-700 model tokens).
        threads: torch threads (None = torch's default).
        progress: the training loop's progress bar (`embforge demo --progress/--no-progress`).
        examples: example searches to print.
        seed: seeds the data order, sampling and dropout.
        sparse_init: the recipe's ``model.sparse_init`` (the bundled model has no sparse weights):
            ``idf_terms``, per-token-id term weights started at the training documents' IDF under
            the contextual weight (bench/results/quality.md, variant (h)).
        sparse_aggregation: the recipe's ``model.sparse_aggregation``: ``max_tf``, a repeated
            term's max weight times BM25's TF saturation (bench/results/quality_eval512.md: the
            sparse head 0.550 -> 0.613 and the hybrid 0.626 -> 0.644 mean nDCG@10, 3 seeds).
        dev_queries: training questions per language held out of mining and training: the dev
            split on which ``embforge tune-fusion``'s grid picks the fine-tuned model's fusion
            (fusion.json; the paper's weighted 1,0.3,1 stays unless the dev gain exceeds
            ``fusion_min_gain``). 0 = no tuning.
    """

    model: str | None = None
    languages: tuple[str, ...] = ("en", "de", "es")
    out_dir: str = "demo_out"
    max_eval_queries: int | None = None
    max_train_queries: int | None = None
    steps: int = 40
    batch_size: int = 16
    n_negatives: int = 1
    perc_pos: float | None = 0.95
    lr: float = 5e-5
    temperature: float = 0.05
    matryoshka_dims: tuple[int, ...] = (64, 128)
    query_max_length: int = 32
    doc_max_length: int = 128
    eval_max_length: int | None = None
    threads: int | None = None
    progress: bool = True
    examples: int = 3
    seed: int = 0
    sparse_init: str = "idf_terms"
    sparse_aggregation: str = "max_tf"
    dev_queries: int = 60
    fusion_min_gain: float = 0.01
    extra_train: dict[str, Any] = field(default_factory=dict)


class _Clock:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo, self.t0 = echo, time.perf_counter()
        self.stages: dict[str, float] = {}

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        self.echo(f"\n== {name}")
        t = time.perf_counter()
        out = fn()
        self.stages[name] = round(time.perf_counter() - t, 1)
        self.echo(f"   ({self.stages[name]:.1f}s)")
        return out


def _eval_sets(cfg: QuickstartConfig) -> list[RetrievalSet]:
    return [
        load_beir(DEMO_ROOT / f"xquad-{lang}", split="test", max_queries=cfg.max_eval_queries, language=lang)
        for lang in cfg.languages
    ]


def _eval_length(encoder, cfg: QuickstartConfig) -> int:
    return min(cfg.eval_max_length or encoder.model_limit, encoder.model_limit)


def _evaluate(encoder, sets, cfg: QuickstartConfig, echo) -> dict[str, Any]:
    n = _eval_length(encoder, cfg)
    return evaluate_all(encoder, sets, log=echo, mrl_dims=None, bm25=True, batch_size=32, max_length=n)


def _dev_set(cfg: QuickstartConfig) -> RetrievalSet | None:
    """The last ``dev_queries`` training questions of each language, one set over every language's
    corpus (ids prefixed with the language): never mined, trained on or reported."""
    if not cfg.dev_queries:
        return None
    out = RetrievalSet("dev", [], [], [], [], {}, language="+".join(cfg.languages))
    for lang in cfg.languages:
        d = load_beir(DEMO_ROOT / f"xquad-{lang}", split="train", language=lang)
        out.doc_ids += [f"{lang}:{x}" for x in d.doc_ids]
        out.doc_texts += d.doc_texts
        keep = range(max(0, len(d.query_ids) - cfg.dev_queries), len(d.query_ids))
        out.query_ids += [f"{lang}:{d.query_ids[i]}" for i in keep]
        out.query_texts += [d.query_texts[i] for i in keep]
        for i in keep:
            out.qrels[f"{lang}:{d.query_ids[i]}"] = {
                f"{lang}:{k}": v for k, v in d.qrels[d.query_ids[i]].items()
            }
    return out


def _tune_fusion(model_dir: Path, dev: RetrievalSet, cfg: QuickstartConfig, echo) -> dict[str, Any]:
    """``embforge tune-fusion`` on the dev split: writes ``model_dir/fusion.json``."""
    enc = Encoder.from_pretrained(str(model_dir))
    heads = tuple(h for h in ("dense", "sparse", "multivector") if h in enc.heads)
    mats = score_matrices(enc, dev, heads, batch_size=32, max_length=_eval_length(enc, cfg))
    res = tune_fusion_sets([(mats, dev)], margin=cfg.fusion_min_gain, tokenizer=enc.tokenizer)
    res.chosen.tuned["dev"] = {"questions": len(dev.query_ids), "languages": list(cfg.languages)}
    write_fusion(model_dir, res.chosen)
    w = ",".join(f"{v:g}" for v in res.chosen.weights.values())
    echo(
        f"   dev ({len(dev.query_ids)} held-out training questions): paper weighted 1,0.3,1 "
        f"{res.default_ndcg:.4f}, best {res.best['fusion']} {res.best['ndcg@10']:.4f} -> "
        f"{res.chosen.fusion} {w} ({res.chosen.tuned['decision']})"
    )
    return {"fusion": res.chosen.fusion, "weights": dict(res.chosen.weights), **res.chosen.tuned}


def _mine(encoder, cfg: QuickstartConfig, out: Path, echo) -> tuple[Path, dict[str, int]]:
    teacher = EncoderTeacher(encoder, heads=("dense",), batch_size=32, max_length=cfg.doc_max_length)
    mcfg = MiningConfig(top_k=30, n_negatives=cfg.n_negatives, perc_pos=cfg.perc_pos, seed=cfg.seed)
    stats = MiningStats()
    path = out / "train_mined.jsonl"
    rows = []
    for lang in cfg.languages:
        root = DEMO_ROOT / f"xquad-{lang}"
        corpus = {d.id: d.text for d in read_corpus(root / "corpus.jsonl")}
        index = CorpusIndex(corpus.values(), teacher)
        dev = set(load_beir(root, split="train").query_ids[-cfg.dev_queries :]) if cfg.dev_queries else set()
        mined = (q for q in queries_from_beir(root, "train", corpus) if q.id not in dev)
        queries = islice(mined, cfg.max_train_queries)
        for ex in mine(queries, index, teacher, mcfg, stats):
            if len(ex.neg) >= cfg.n_negatives:  # the recipe needs n_negatives per query
                rows.append(json.dumps({**ex.to_dict(), "lang": lang}, ensure_ascii=False))
    echo("   " + stats.summary())
    if not rows:
        raise DataError(
            f"mining kept no query with {cfg.n_negatives} negatives (perc_pos={cfg.perc_pos}): the teacher "
            "scores every candidate close to the positive; use a trained base model, or perc_pos=None"
        )
    atomic_write_text(path, "\n".join(rows) + "\n")
    echo(f"   wrote {len(rows)} training examples to {path}")
    return path, stats.as_dict()


def _train(cfg: QuickstartConfig, train_file: Path, out: Path, echo, full_dim: int = 10**9) -> Path:
    recipe = RECIPES.get("contrastive")
    data = {
        "recipe": "contrastive",
        "model": {
            "path": cfg.model,
            "heads": ["dense", "sparse", "multivector"],
            "sparse_init": cfg.sparse_init,
            "sparse_aggregation": cfg.sparse_aggregation,
        },
        "data": {
            "train_files": [str(train_file)],
            "num_negatives": cfg.n_negatives,
            "query_max_length": cfg.query_max_length,
            "doc_max_length": cfg.doc_max_length,
        },
        "loss": {
            "name": "m3",
            "temperature": cfg.temperature,
            "matryoshka_dims": [d for d in cfg.matryoshka_dims if d < full_dim],
        },
        "optim": {"lr": cfg.lr},
        "schedule": {"name": "warmup_linear", "warmup_ratio": 0.1},
        "loop": {
            "output_dir": str(out / "train"),
            "max_steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "checkpoint_every": 0,
            "resume": False,
            "progress": cfg.progress,
            "threads": cfg.threads,
        },
    }
    for dotted, val in cfg.extra_train.items():  # e.g. {"loss.matryoshka_dims": [128, 256]}
        node: dict[str, Any] = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = val
    result = recipe.run(build_config(recipe.schema, data))
    log = [r for r in result.log if "loss" in r]
    if log:
        echo(f"   loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.3f} over {result.steps} steps")
    return Path(result.output_dir) / "final"


def _index_and_search(encoder, cfg: QuickstartConfig, out: Path, echo) -> dict[str, Any]:
    lang = cfg.languages[0]
    data = load_beir(DEMO_ROOT / f"xquad-{lang}", split="test")
    heads = ("dense", "sparse", "multivector")
    emb = encoder.encode(
        data.doc_texts, role="document", heads=heads, batch_size=32, max_length=_eval_length(encoder, cfg)
    )
    index = HybridIndex(dense=ExactDenseIndex(), sparse=SparseIndex(), multivector=MultiVectorIndex())
    index.add(data.doc_ids, emb)
    path = index.save(out / "index")
    loaded = load_index(path)
    echo(f"   hybrid index of {len(data.doc_ids)} passages saved to {path} and loaded back")
    qi = list(range(0, len(data.query_ids), max(1, len(data.query_ids) // max(cfg.examples, 1))))[
        : cfg.examples
    ]
    q = encoder.encode(
        [data.query_texts[i] for i in qi], role="query", heads=heads, max_length=cfg.query_max_length
    )
    own = encoder.fusion  # the model's fusion.json (tuned above), else the index's weighted 1,0.3,1
    hits = loaded.search(q, k=3, **({} if own is None else own.resolve()))
    text = dict(zip(data.doc_ids, data.doc_texts))
    shown = []
    for n, i in enumerate(qi):
        rel = data.qrels[data.query_ids[i]]
        top = hits.ids[n][0]
        ok = "correct" if top in rel else "wrong"
        echo(f"   Q: {data.query_texts[i]}\n      -> [{ok}] {hits.scores[n][0]:.3f} {text[top][:100]}...")
        shown.append(
            {"query": data.query_texts[i], "top": top, "correct": top in rel, "score": hits.scores[n][0]}
        )
    return {"path": str(path), "examples": shown}


def before_after_table(before: dict, after: dict, metric: str = "ndcg@10") -> str:
    """Rows ``set/head: before -> after (change)`` for every retrieval cell in both runs."""
    lines = [
        f"{metric} on held-apart questions",
        f"{'set':<10} {'head':<12} {'base':>8} {'tuned':>8} {'change':>8}",
    ]
    for ds, rb in before.get("retrieval", {}).items():
        ra = after.get("retrieval", {}).get(ds)
        if ra is None:
            continue
        for head, mb in rb["heads"].items():
            if head in ra["heads"]:
                x, y = mb[metric], ra["heads"][head][metric]
                lines.append(f"{ds:<10} {head:<12} {x:>8.4f} {y:>8.4f} {y - x:>+8.4f}")
    return "\n".join(lines)


def _mean_metric(run: dict, head: str, metric: str = "ndcg@10") -> float:
    vals = [r["heads"][head][metric] for r in run.get("retrieval", {}).values() if head in r["heads"]]
    return sum(vals) / len(vals) if vals else float("nan")


def _start(cfg: QuickstartConfig, echo: Callable[[str], None]) -> Path:
    """Threads, seed and output folder; prints the run's one-line summary."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo(
        f"embforge quickstart: model {cfg.model or 'bundled all-MiniLM-L6-v2'}, "
        f"languages {', '.join(cfg.languages)}, {torch.get_num_threads()} threads, output {out}/"
    )
    return out


def _before_training(cfg: QuickstartConfig, sets, out: Path, clock: _Clock, echo):
    """Stages 1-2 on the base model: evaluate it, mine with it; the model is freed on return."""
    base = Encoder.from_pretrained(cfg.model, heads=("dense", "sparse", "multivector"))
    before = clock.stage(
        "1/6 evaluate the base model (held-apart questions)", lambda: _evaluate(base, sets, cfg, echo)
    )
    train_file, mining = clock.stage(
        f"2/6 mine hard negatives (TopK-PercPos, perc_pos={cfg.perc_pos})",
        lambda: _mine(base, cfg, out, echo),
    )
    return before, train_file, mining, base.hidden_size


def _report(cfg: QuickstartConfig, runs: dict[str, dict], model_dir: Path, extra: dict, out: Path):
    """Write ``report.json`` / ``report.md`` with plots; returns their paths."""
    notes = [
        "Held-apart questions: XQuAD articles with index % 4 == 3, never used for training or mining.",
        "all-MiniLM-L6-v2 ships no sparse / multi-vector weights: the base model's heads are the explicit "
        "initialisation (every token weighs 0.4; identity projection); the fine-tune starts the sparse head "
        f"from model.sparse_init={cfg.sparse_init} with model.sparse_aggregation={cfg.sparse_aggregation} "
        "and trains both heads with the M3 recipe.",
    ]
    report = build_report(
        runs,
        title="embforge quickstart: base vs fine-tuned (M3 recipe)",
        model={"base": cfg.model or "bundled all-MiniLM-L6-v2", "fine_tuned": str(model_dir)},
        data={
            "demo": str(DEMO_ROOT),
            "languages": list(cfg.languages),
            "split": "test (held-apart articles)",
        },
        command="embforge demo",
        notes=notes,
        extra={"config": asdict(cfg), **extra},
    )
    return write_report(report, out / "report")


def run_quickstart(
    cfg: QuickstartConfig | None = None, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the whole quickstart; returns ``{"before", "after", "stages", "report", ...}``."""
    cfg = cfg or QuickstartConfig()
    out = _start(cfg, echo)
    clock = _Clock(echo)
    sets = _eval_sets(cfg)
    before, train_file, mining, full_dim = _before_training(cfg, sets, out, clock, echo)
    model_dir = clock.stage(
        f"3/6 fine-tune with the M3 recipe + Matryoshka ({cfg.steps} steps x {cfg.batch_size} queries)",
        lambda: _train(cfg, train_file, out, echo, full_dim),
    )
    dev = _dev_set(cfg)
    fusion = (
        clock.stage(
            "   tune the hybrid's fusion on the dev split (embforge tune-fusion)",
            lambda: _tune_fusion(model_dir, dev, cfg, echo),
        )
        if dev is not None
        else None
    )
    tuned = Encoder.from_pretrained(str(model_dir))  # with its fusion.json
    after = clock.stage("4/6 evaluate the fine-tuned model", lambda: _evaluate(tuned, sets, cfg, echo))
    search = clock.stage(
        "5/6 hybrid index + example searches", lambda: _index_and_search(tuned, cfg, out, echo)
    )
    echo("\n== 6/6 before / after\n" + before_after_table(before, after))
    summary = {
        h: (_mean_metric(before, h), _mean_metric(after, h))
        for h in before["retrieval"][sets[0].name]["heads"]
    }
    extra = {"mining": mining, "stages_seconds": clock.stages, "search": search, "fusion": fusion}
    files = _report(cfg, {"base": before, "fine-tuned": after}, model_dir, extra, out)
    total = time.perf_counter() - clock.t0
    echo(
        "\nmean nDCG@10 base -> fine-tuned: "
        + ", ".join(f"{h} {a:.3f}->{b:.3f}" for h, (a, b) in summary.items())
    )
    echo(f"report: {files['md']} (plots next to it); total {total / 60:.1f} min")
    return {
        "before": before,
        "after": after,
        "summary": summary,
        "stages": clock.stages,
        "report": files,
        "model_dir": model_dir,
        "search": search,
        "seconds": total,
    }
