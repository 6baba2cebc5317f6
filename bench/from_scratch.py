"""From scratch on CPU: tokenizer -> tiny RetroMAE -> contrastive pretraining, vs a random model.

Everything runs through embforge's own entry points (``train_tokenizer``,
``build_masked_lm``, the ``retromae`` and ``contrastive`` recipes as loaded by
``embforge train``, ``Encoder.encode``, ``eval.metrics``) on XQuAD:

* split the 48 XQuAD articles: every 4th article is a test article, the rest train;
* tokenizer + RetroMAE: raw contexts of the train articles in all 12 languages (no labels);
* contrastive pretraining (configs/arctic-pretrain.yaml with small-model overrides: dense only,
  random in-batch negatives, one language per batch, query 32 / doc 128 tokens (256 in the paper), WSD, Matryoshka):
  (question, paragraph) pairs of the train articles of the TRAIN languages only;
* evaluation: questions of the test articles of each HELD-APART language (never seen as pairs,
  never seen as questions) against all 240 paragraphs of that language; nDCG@10 of the dense head.

Models compared (same size, same tokenizer): random init; RetroMAE only; contrastive from random
init (no RetroMAE); RetroMAE + contrastive.

Usage:
    flock /tmp/embforge-bench.lock python bench/from_scratch.py [--size xlmr-mini] [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
XQUAD = Path("/work/shared/data/xquad")
LANGS = ["ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"]


def load_xquad(lang: str):
    """(paragraphs [(pid, article, text)], questions [(qid, article, pid, text)]); ids aligned across languages."""
    data = json.loads((XQUAD / f"xquad.{lang}.json").read_text(encoding="utf-8"))["data"]
    paras, questions = [], []
    for a, art in enumerate(data):
        for p, para in enumerate(art["paragraphs"]):
            pid = f"a{a}p{p}"
            paras.append((pid, a, para["context"]))
            questions += [(qa["id"], a, pid, qa["question"]) for qa in para["qas"]]
    return paras, questions


def is_test_article(a: int) -> bool:
    return a % 4 == 3


def chunks(text: str, max_chars: int = 300) -> list[str]:
    """Split a paragraph into sentence-aligned pieces of at most ~max_chars characters."""
    sents = [s for s in re.split(r"(?<=[.!?。！？])\s*", text) if s.strip()]
    out, cur = [], ""
    for s in sents:
        if cur and len(cur) + len(s) > max_chars:
            out.append(cur)
            cur = ""
        cur = f"{cur} {s}".strip()
    if cur:
        out.append(cur)
    return out


def write_jsonl(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def run_recipe(config: str | dict, overrides: list[str]):
    """Load a config exactly as `embforge train` does and run its recipe."""
    import yaml

    from embforge.train.recipes import load_config

    if isinstance(config, dict):
        tmp = Path(tempfile.mkstemp(suffix=".yaml")[1])
        tmp.write_text(yaml.safe_dump(config), encoding="utf-8")
        config = str(tmp)
    recipe, cfg = load_config(config, overrides)
    return recipe.run(cfg)


def ndcg10(model_dir: Path, lang: str, pooling: str = "cls", doc_len: int = 128) -> float:
    from embforge.eval.metrics import evaluate, run_from_scores
    from embforge.model.encoder import Encoder
    from embforge.model.pooling import build_pooling

    enc = Encoder.from_pretrained(str(model_dir), heads=("dense",))
    if enc.config.pooling != pooling:
        enc.config.pooling = pooling
        enc.dense_head.pooling = build_pooling(pooling, enc.hidden_size)
    paras, questions = load_xquad(lang)
    qs = [q for q in questions if is_test_article(q[1])]
    d = enc.encode([p[2] for p in paras], role="document", max_length=doc_len, batch_size=32).dense
    q = enc.encode([x[3] for x in qs], role="query", max_length=32, batch_size=64).dense
    run = run_from_scores(q @ d.T, [x[0] for x in qs], [p[0] for p in paras], k=10)
    qrels = {x[0]: {x[2]: 1} for x in qs}
    return evaluate(qrels, run, k_values=(10,))["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="xlmr-mini")
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--held-out", default="es,de,ru", help="languages kept out of contrastive training")
    ap.add_argument(
        "--tokenizer-texts", type=int, default=4000, help="random sample of raw texts for the tokenizer"
    )
    ap.add_argument("--retromae-steps", type=int, default=250)
    ap.add_argument("--contrastive-steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--retromae-len", type=int, default=96, help="tokens per raw text in RetroMAE")
    ap.add_argument("--doc-len", type=int, default=128, help="document tokens (contrastive and eval)")
    ap.add_argument("--contrastive-lr", type=float, default=1e-4)
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--pooling", default="cls", help="dense pooling of every model (cls as M3/Arctic)")
    ap.add_argument("--note", default="Run under the bench lock (flock /tmp/embforge-bench.lock).")
    ap.add_argument("--reuse", action="store_true", help="skip stages whose output exists in --workdir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--quick", action="store_true", help="a few steps only (smoke test of the script)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "from_scratch.md"))
    args = ap.parse_args()
    if args.quick:
        args.retromae_steps, args.contrastive_steps = 5, 5

    import torch

    torch.set_num_threads(args.threads)
    from embforge.model.builders import XLMR_SIZES, build_masked_lm
    from embforge.pretrain.tokenizer import train_tokenizer

    held = [x for x in args.held_out.split(",") if x]
    train_langs = [x for x in LANGS if x not in held]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="embforge-from-scratch-"))
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    times: dict[str, float] = {}

    # ---- data
    raw, pairs = [], []
    for lang in LANGS:
        paras, questions = load_xquad(lang)
        raw += [c for pid, a, text in paras if not is_test_article(a) for c in chunks(text)]
        if lang in train_langs:
            ptext = {pid: text for pid, _, text in paras}
            pairs += [
                {"query": qt, "positive": ptext[pid], "lang": lang}
                for _, a, pid, qt in questions
                if not is_test_article(a)
            ]
    raw_file = write_jsonl(work / "raw.jsonl", ({"text": t} for t in raw))
    pair_file = write_jsonl(work / "pairs.jsonl", pairs)
    print(f"raw texts {len(raw)}, pairs {len(pairs)} ({', '.join(train_langs)}), held out {held}", flush=True)

    def stage(name: str, out: Path, fn) -> None:
        if args.reuse and (out / "config.json").is_file():
            print(f"reusing {out}", flush=True)
            return
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t

    # ---- tokenizer
    sample = np.random.default_rng(args.seed).permutation(len(raw))[: args.tokenizer_texts]
    stage(
        "tokenizer",
        work / "tokenizer",
        lambda: train_tokenizer(
            [raw[i] for i in sorted(sample)], vocab_size=args.vocab_size, output_dir=work / "tokenizer"
        ),
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(work / "tokenizer"))

    # ---- random init baseline (= the starting point of both training paths)
    from embforge.pretrain.export import save_pretrained_encoder

    rand_lm = build_masked_lm(args.size, tok, max_length=max(args.doc_len, args.retromae_len), seed=args.seed)
    rand_mlm = work / "random-mlm"
    rand_lm.save_pretrained(str(rand_mlm))
    tok.save_pretrained(str(rand_mlm))
    save_pretrained_encoder(rand_lm.base_model, tok, work / "random", pooling=args.pooling)

    common = [
        f"loop.threads={args.threads}",
        "loop.progress=false",
        f"loop.seed={args.seed}",
        "loop.checkpoint_every=0",
        "loop.precision=fp32",
        "model.gradient_checkpointing=false",
    ]
    # ---- RetroMAE (configs/retromae.yaml with the small model from scratch)
    retromae = common + [
        f"model.path={rand_mlm}",
        "model.max_positions=null",
        f"data.train_files=[{raw_file}]",
        f"data.max_length={args.retromae_len}",
        f"loop.max_steps={args.retromae_steps}",
        f"loop.batch_size={args.batch_size}",
        f"loop.output_dir={work / 'retromae'}",
        "optim.lr=5e-4",
        "schedule.warmup_ratio=0.05",
    ]
    stage(
        "retromae",
        work / "retromae" / "final",
        lambda: run_recipe(str(ROOT / "configs" / "retromae.yaml"), retromae),
    )

    # ---- contrastive pretraining (configs/arctic-pretrain.yaml scaled down)
    dim = XLMR_SIZES[args.size].hidden_size
    contrastive = common + [
        f"data.train_files=[{pair_file}]",
        f"data.doc_max_length={args.doc_len}",
        f"loop.max_steps={args.contrastive_steps}",
        f"loop.batch_size={args.batch_size}",
        "loop.sub_batch_size=null",
        f"model.pooling={args.pooling}",
        f"optim.lr={args.contrastive_lr}",
        f"loss.temperature={args.tau}",
        f"loss.matryoshka_dims=[{dim // 2}]",
    ]
    for start, name in (("retromae/final", "retromae-contrastive"), ("random", "random-contrastive")):
        ov = contrastive + [f"model.path={work / start}", f"loop.output_dir={work / name}"]
        stage(
            f"contrastive from {start.split('/')[0]}",
            work / name / "final",
            lambda ov=ov: run_recipe(str(ROOT / "configs" / "arctic-pretrain.yaml"), ov),
        )

    # ---- evaluation
    models = {
        "random init": work / "random",
        "RetroMAE only": work / "retromae" / "final",
        "contrastive only (random init)": work / "random-contrastive" / "final",
        "RetroMAE + contrastive": work / "retromae-contrastive" / "final",
    }
    eval_langs = held + ["en"]
    table = {
        name: {lang: ndcg10(path, lang, args.pooling, args.doc_len) for lang in eval_langs}
        for name, path in models.items()
    }
    times["total"] = time.perf_counter() - t_all

    cmd = "python " + " ".join(["bench/from_scratch.py"] + sys.argv[1:])
    n_params = sum(p.numel() for p in rand_lm.base_model.parameters())
    lines = [
        "# From scratch on CPU: tokenizer -> RetroMAE -> contrastive (XQuAD)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Model {args.size} ({n_params / 1e6:.1f}M backbone parameters), unigram vocab {len(tok)} "
        f"(trained on {min(args.tokenizer_texts, len(raw))} sampled raw texts), "
        f"RetroMAE {args.retromae_steps} steps x {args.batch_size} texts ({args.retromae_len} tokens, encoder mask 0.3, "
        f"decoder mask 0.5), contrastive {args.contrastive_steps} steps x {args.batch_size} pairs "
        f"(configs/arctic-pretrain.yaml: in-batch negatives, one language per batch, query 32 / doc "
        f"{args.doc_len} tokens, WSD; Matryoshka {dim // 2} for this {dim}-d model, tau {args.tau}, "
        f"lr {args.contrastive_lr}); {args.pooling} pooling for every model.",
        f"Raw texts (train articles, all 12 languages): {len(raw)}; pairs (train articles of "
        f"{', '.join(train_langs)}): {len(pairs)}.",
        f"Held-apart languages (no pairs, no questions seen): {', '.join(held)}. Evaluation: questions of the "
        "12 test articles (every 4th) vs all 240 paragraphs of the language; dense nDCG@10. `en` is a "
        "training language, shown on its test articles for reference.",
        "",
        "| model | "
        + " | ".join(f"nDCG@10 {x}" + (" (held apart)" if x in held else "") for x in eval_langs)
        + " |",
        "|---|" + "---|" * len(eval_langs),
    ]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[x]:.4f}" for x in eval_langs) + " |")
    if args.pooling != "cls":
        lines += [
            "",
            f"Why {args.pooling} pooling: in a development run on the same pairs (xlmr-mini, random init, "
            "CLS pooling, lr 1e-4, tau 0.05) the contrastive loss fell to ln(32) = 3.466 (all in-batch "
            "scores equal) and stayed there for 40 steps, while mean pooling learned (loss 3.37 -> ~2.3 by "
            "step 40). A random model's first token carries little of the text, so a CPU-sized run uses "
            "mean pooling for every model here; M3/Arctic use CLS on pretrained backbones.",
        ]
    lines += [
        "",
        "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()),
        f"Machine: 2 shared CPU cores (8 engineers' jobs), {args.threads} torch threads. {args.note}",
        "",
    ]
    full = table["RetroMAE + contrastive"]
    rand = table["random init"]
    result = " ".join(
        [f"ndcg10_{x}={full[x]:.4f} random_{x}={rand[x]:.4f}" for x in held]
        + [f"total_s={times['total']:.0f}"]
    )
    lines.append(f"RESULT {result}")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
