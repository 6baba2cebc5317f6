"""A/B: the same workloads on two source trees, alternated, to show a refactor changes no number.

Each round runs every workload once per tree, each in a fresh process (``PYTHONPATH=<tree>/src``),
alternating the order, so both trees see the same machine load. Reports, per workload, the
largest difference between the trees' outputs and the median time ratio (B / A).

Run (from the repository root; A = the tree before the refactor, e.g. a ``git worktree`` of it):
    flock /tmp/embforge-bench.lock python bench/ab_refactor.py --a /path/to/old --b . --rounds 3

Workloads (real data from the bundled demo sets, the bundled all-MiniLM-L6-v2):
- encode-dense: 1,190 XQuAD-de queries + 240 passages, dense head;
- encode-m3: the same texts, all three heads (MiniLM saved in the BGE-M3 layout);
- hybrid-search: dense + sparse candidates, three-head weighted re-rank of 300 queries over 240 passages;
- train: 4 steps of the M3 recipe (batch 8, 3 negatives) from the same mined file;
- encode-single: 300 XQuAD-de queries encoded one a call (dense; the per-call overhead).

``--out FILE --title T`` also writes the table, the command and a RESULT line (B/A time ratio per
workload) to a results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent(
    r"""
    import json, sys, time, os
    import numpy as np, torch
    torch.set_num_threads(2)
    from embforge.model.encoder import Encoder
    demo = sys.argv[2]
    work = sys.argv[3]
    def rows(name):
        return [json.loads(l) for l in open(os.path.join(demo, name), encoding="utf-8")]
    queries = [r["text"] for r in rows("queries.jsonl")]
    docs = [(r.get("title", "") + " " + r["text"]).strip() for r in rows("corpus.jsonl")]
    job = sys.argv[1]
    out = {}
    if job == "encode-dense":
        enc = Encoder.from_pretrained(heads=("dense",))
        t = time.perf_counter()
        e = enc.encode(queries + docs, heads=("dense",))
        out["seconds"] = time.perf_counter() - t
        out["values"] = e.dense[:50].ravel().tolist()
    elif job == "encode-single":  # one query a call: the per-call cost a search box pays
        enc = Encoder.from_pretrained(heads=("dense",))
        enc.encode(queries[:20], role="query")  # warm-up
        t = time.perf_counter()
        e = [enc.encode(q, role="query").dense[0] for q in queries[:300]]
        out["seconds"] = time.perf_counter() - t
        out["values"] = np.concatenate(e[:20]).tolist()
    elif job in ("encode-m3", "hybrid-search"):
        path = os.path.join(work, "m3")
        if not os.path.isdir(path):
            Encoder.from_pretrained().save_pretrained(path, format="bge-m3")
        enc = Encoder.from_pretrained(path)
        heads = ("dense", "sparse", "multivector")
        if job == "encode-m3":
            t = time.perf_counter()
            e = enc.encode(queries + docs, heads=heads)
            out["seconds"] = time.perf_counter() - t
            out["values"] = (e.dense[:20].ravel().tolist() + e.sparse.values[:200].tolist()
                             + np.concatenate(e.multivector[:5]).ravel()[:500].tolist())
        else:
            from embforge.search.retriever import make_hybrid
            de = enc.encode(docs, heads=heads)
            qe = enc.encode(queries[:300], role="query", heads=heads)
            idx = make_hybrid(heads)
            idx.add([str(i) for i in range(len(docs))], de)
            t = time.perf_counter()
            hits = idx.search(qe, k=10)
            out["seconds"] = time.perf_counter() - t
            out["values"] = [s for row in hits.scores[:50] for s in row]
            out["ids"] = [i for row in hits.ids for i in row]
    print("RESULT " + json.dumps(out))
    """
)


def run_job(tree: Path, job: str, demo: Path, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "TOKENIZERS_PARALLELISM": "false"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", EMBFORGE_SHARED_DATA="")
    if job == "train":
        return run_train(tree, demo, work, env)
    p = subprocess.run(
        [sys.executable, "-c", WORKER, job, str(demo), str(work)], env=env, capture_output=True, text=True
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{tree}: {job} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def run_train(tree: Path, demo: Path, work: Path, env: dict) -> dict:
    out = Path(tempfile.mkdtemp(dir=work, prefix="train-"))
    mined = work / "mined.jsonl"
    cmd = [
        sys.executable,
        "-c",
        "from embforge.cli.app import main; main()",
        "train",
        str(tree / "configs" / "m3-finetune.yaml"),
        "model.path=null",
        f"data.train_files=[{mined}]",
        "data.num_negatives=3",
        "data.doc_max_length=128",
        "data.query_max_length=32",
        "loop.batch_size=8",
        "loop.max_steps=4",
        "loop.threads=2",
        "loop.progress=false",
        "loop.precision=fp32",
        "loop.sub_batch_size=null",
        "model.gradient_checkpointing=false",
        "loop.checkpoint_every=0",
        f"loop.output_dir={out}",
    ]
    import time

    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"{tree}: train failed:\n{p.stderr[-3000:]}")
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x.strip()]
    return {"seconds": secs, "values": [r["loss"] for r in log if "loss" in r]}


def write_mined(demo: Path, work: Path) -> None:
    """A fixed training file: each XQuAD-de training question, its passage, 3 other passages."""
    corpus = {r["_id"]: r for r in map(json.loads, open(demo / "corpus.jsonl", encoding="utf-8"))}
    queries = {r["_id"]: r["text"] for r in map(json.loads, open(demo / "queries.jsonl", encoding="utf-8"))}
    ids = sorted(corpus)
    lines = (demo / "qrels" / "train.tsv").read_text().splitlines()[1:]
    with open(work / "mined.jsonl", "w", encoding="utf-8") as f:
        for line in lines[:200]:
            q, d, _ = line.split("\t")
            negs = [ids[(ids.index(d) + k) % len(ids)] for k in (1, 2, 3)]
            rec = {"query": queries[q], "pos": [corpus[d]["text"]], "neg": [corpus[x]["text"] for x in negs]}
            f.write(json.dumps(rec) + "\n")


def _rev(tree: Path) -> str:
    """The tree's commit, and whether it has uncommitted changes."""
    git = ["git", "-C", str(tree)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    return (head or "not a git tree") + (" + uncommitted changes" if dirty.strip() else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="tree A (before)")
    ap.add_argument("--b", type=Path, default=Path("."), help="tree B (after)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="encode-dense,encode-m3,hybrid-search,train")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here (Markdown, atomically)")
    ap.add_argument("--title", default="A/B of two source trees", help="--out: the report's title")
    args = ap.parse_args()
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    a, b = args.a.resolve(), args.b.resolve()
    demo = b / "src" / "embforge" / "resources" / "demo" / "xquad-de"
    work = Path(tempfile.mkdtemp(prefix="ab-"))
    write_mined(demo, work)
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0]
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    load0 = os.getloadavg()[0]
    say(f"A = {a} ({_rev(a)}), B = {b} ({_rev(b)}); {platform.processor() or platform.machine()} flags {isa}; load {load0:.1f}")
    say("")
    say("| workload | max abs diff of outputs | same ids | time B/A (median of rounds) |")
    say("|---|---|---|---|")
    ratios = {}
    for job in args.jobs.split(","):
        ta, tb, diff, same = [], [], 0.0, True
        for r in range(args.rounds):
            order = [(a, ta), (b, tb)] if r % 2 == 0 else [(b, tb), (a, ta)]
            res = {}
            for tree, times in order:
                o = run_job(tree, job, demo, work)
                times.append(o["seconds"])
                res[tree] = o
            va, vb = res[a]["values"], res[b]["values"]
            diff = max(
                diff, max((abs(x - y) for x, y in zip(va, vb)), default=0.0), float(len(va) != len(vb))
            )
            same &= res[a].get("ids") == res[b].get("ids")
        ratio = statistics.median(tb) / statistics.median(ta)
        ratios[job] = ratio
        say(
            f"| {job} | {diff:.2e} | {same} | {ratio:.2f} (A {statistics.median(ta):.2f} s, B {statistics.median(tb):.2f} s; "
            f"rounds A {', '.join(f'{x:.2f}' for x in ta)}, B {', '.join(f'{x:.2f}' for x in tb)}) |"
        )
    say("")
    say(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.out:
        from embforge.data.io import atomic_write

        cmd = "python bench/ab_refactor.py " + " ".join(shlex.quote(x) for x in sys.argv[1:])
        result = " ".join(f"{j.replace('-', '_')}_b_over_a={r:.3f}" for j, r in ratios.items())
        with atomic_write(args.out) as fh:
            fh.write(f"# {args.title}\n\nCommand: `{cmd}`\n\n" + "\n".join(lines) + f"\n\nRESULT {result}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
