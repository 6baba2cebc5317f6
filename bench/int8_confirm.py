"""Independent check of the int8 per-row variants (issue 19) on data the choice never saw.

The int8 export's per-token groups (``embforge.export.onnx.INT8_PER_ROW``) were compared on dev texts
of the bundled XQuAD sets (de/en/es training articles) and checked on the gate's own questions
(tests/unit/export/test_onnx_quality.py). This script measures them on other sets: the nine XQuAD
languages that are not bundled (all 1190 questions against the 240 paragraphs of each; the table
also splits the held-apart articles, index % 4 == 3, from the training ones) and a DBpedia sample
(every query, its relevant documents and random others up to ``--dbpedia-docs``). Sets are built with
embforge's own loaders (``read_squad`` -> ``squad_to_beir`` -> ``write_beir`` -> ``load_beir``).

For the bundled MiniLM with all three heads (as the gate), against torch fp32: nDCG@10 per head
and hybrid (exact, every document scored; the hybrid is the encoder's fusion, as ``embforge eval``),
the dense cosine (mean / min over the set's queries and documents), and a paired bootstrap over
queries of ``|delta_A| - |delta_B|`` (delta: the variant's nDCG@10 minus torch's; A the first
variant, B the second): a positive difference means B is closer to fp32.

    python bench/int8_confirm.py                 # bench/results/int8_confirm.md + .json
    python bench/int8_confirm.py --variants ffn_down,heads ffn_down,heads+smooth \
        --out bench/results/int8_smooth_confirm  # SmoothQuant (the export's default) vs none

Fidelity only (no timing), so it does not take the bench lock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from embforge.eval.stats import interval, resample_index  # noqa: E402

DATA = Path(os.environ.get("EMBFORGE_DATA", "/work/shared/data"))
ALL = ("dense", "sparse", "multivector")
SCORED = (*ALL, "hybrid")
#: the XQuAD languages not bundled in src/embforge/resources/demo (de, en, es are)
LANGS = ("ar", "el", "hi", "ro", "ru", "th", "tr", "vi", "zh")
VARIANTS = ("ffn_down,heads", "ffn_up,ffn_down,heads")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_info() -> tuple[str, str]:
    """(model name, the SIMD/AMX flags of ``CPU_FLAGS`` it has), from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "?")
    flags = next(
        (set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")), set()
    )
    return name, " ".join(f for f in CPU_FLAGS if f in flags)


def xquad_set(lang: str, work: Path):
    """All questions of ``xquad.<lang>.json`` against its 240 paragraphs, as a ``RetrievalSet``."""
    from embforge.data.convert.squad import find_xquad_files, read_squad, squad_to_beir
    from embforge.data.io import write_beir
    from embforge.eval.datasets import load_beir

    paras = read_squad(find_xquad_files(DATA / "xquad")[lang])
    docs, queries, qrels = squad_to_beir(paras, lang=lang)
    write_beir(work / f"xquad-{lang}", docs, queries, qrels)
    return load_beir(work / f"xquad-{lang}", split="test", language=lang)


def held_queries(ds) -> set[str]:
    """The queries whose paragraph is in a held-apart article (``embforge.data.mix.held_apart``)."""
    from embforge.data.mix import held_apart

    return {q for q, rel in ds.qrels.items() if any(held_apart(int(d.split("-")[0])) for d in rel)}


def dbpedia_set(n_docs: int, seed: int = 0):
    """Every DBpedia query, its relevant documents and seeded random others up to ``n_docs``."""
    from embforge.eval.datasets import RetrievalSet, load_beir

    ds = load_beir(DATA / "dbpedia_subset", split="test", name="dbpedia", language="en")
    rel = {d for q in ds.query_ids for d, r in ds.qrels[q].items() if r > 0}
    keep = [i for i, d in enumerate(ds.doc_ids) if d in rel]
    others = [i for i, d in enumerate(ds.doc_ids) if d not in rel]
    keep = sorted(keep + random.Random(seed).sample(others, max(0, min(len(others), n_docs - len(keep)))))
    docs = set(ds.doc_ids[i] for i in keep)
    return RetrievalSet(
        ds.name, [ds.doc_ids[i] for i in keep], [ds.doc_texts[i] for i in keep], ds.query_ids,
        ds.query_texts, {q: {d: r for d, r in rel_q.items() if d in docs} for q, rel_q in ds.qrels.items()},
        ds.language, ds.meta,
    )  # fmt: skip


def per_query(enc, ds) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each query's nDCG@10 per head and hybrid (order of ``ds.query_ids``), and the dense vectors
    of the set's queries then documents. Ranked as ``evaluate_retrieval``'s exact mode does (the
    running ``TopK``; the sparse head of the bundled model is untrained and its scores tie, so the
    same top-k path matters: ties at rank 10 are broken by doc id among the kept top 100); a set larger than one of its chunks (2048 documents) is refused."""
    from embforge.eval import metrics as M
    from embforge.eval.fusion import fused_run
    from embforge.eval.runner import EXACT_CANDIDATES, K_VALUES, TopK, hybrid_fusion
    from embforge.model.heads.base import head_scores
    from embforge.scoring import weighted_parts

    if len(ds.doc_ids) > 2048:
        raise SystemExit(f"{ds.name}: {len(ds.doc_ids)} documents; this check scores one chunk of <= 2048")
    qe = enc.encode(ds.query_texts, role="query", heads=ALL, batch_size=32)
    de = enc.encode(ds.doc_texts, role="document", heads=ALL, batch_size=32)
    mats = {h: np.asarray(head_scores(qe, de, h), np.float32) for h in ALL}
    mf = hybrid_fusion(enc, None)
    if mf.low_coverage is not None:
        raise SystemExit("a fusion with a coverage split (per-query weights) is not handled here")
    runs, k = {}, max(K_VALUES)  # the runner keeps the top 100: ties at rank 10 break by doc id (trec_eval)
    for h, s in [
        *mats.items(),
        ("hybrid", weighted_parts(mats, dict(mf.weights)) if mf.fusion == "weighted" else None),
    ]:
        if s is None:  # a candidate-ranked fusion: the runner's candidate path
            runs[h] = fused_run(
                mats, ds.query_ids, ds.doc_ids, mf.fusion, mf.weights, k, EXACT_CANDIDATES, mf.rrf_k
            )
            continue
        top = TopK(len(ds.query_ids), k)
        top.add(np.asarray(s), 0)
        runs[h] = top.run(ds.query_ids, ds.doc_ids)
    out = {}
    for h, run in runs.items():
        pq = M.per_query(ds.qrels, run, (10,))
        out[h] = np.array([pq.get(q, {}).get("ndcg@10", 0.0) for q in ds.query_ids])
    return out, np.concatenate([qe.dense, de.dense])


def paired_bootstrap(da: np.ndarray, db: np.ndarray, n: int, seed: int) -> dict[str, float]:
    """Resample queries: ``|mean da| - |mean db|`` (> 0: B closer to fp32); mean, 95% interval, P(> 0)."""
    rng = np.random.default_rng(seed)
    idx = resample_index(len(da), n, rng)  # the same queries for both variants: paired
    diff = np.abs(da[idx].mean(1)) - np.abs(db[idx].mean(1))
    lo, hi = interval(diff)
    return {
        "diff": float(abs(da.mean()) - abs(db.mean())),
        "lo": float(lo),
        "hi": float(hi),
        "p_b_closer": float((diff > 0).mean()),
        "sd_delta_a": float(da[idx].mean(1).std()),
        "sd_delta_b": float(db[idx].mean(1).std()),
    }


def parse_variant(v: str) -> tuple[tuple[str, ...], float | None]:
    """``"ffn_down,heads"`` -> (per-row groups, no smoothing); ``"ffn_down,heads+smooth"`` -> smoothing
    with ``SMOOTH_ALPHA``; ``"...+smooth0.75"`` -> alpha 0.75 (``embforge.export.smooth``)."""
    from embforge.export.smooth import SMOOTH_ALPHA

    groups, _, smooth = v.partition("+")
    if smooth and not smooth.startswith("smooth"):
        raise SystemExit(f"variant {v!r}: write GROUPS or GROUPS+smooth[ALPHA]")
    alpha = (float(smooth[6:]) if smooth[6:] else SMOOTH_ALPHA) if smooth else None
    return tuple(g for g in groups.split(",") if g), alpha


def export_variants(variants: list[str], work: Path) -> dict[str, Any]:
    """torch fp32 and one int8 ONNX export per variant of the bundled MiniLM with all three heads."""
    from embforge.export import export_onnx
    from embforge.model.encoder import Encoder

    torch_enc = Encoder.from_pretrained(heads=ALL)
    encs: dict[str, Any] = {"torch": torch_enc}
    for v in variants:
        out = work / f"int8-{v.replace(',', '_')}"
        groups, smooth = parse_variant(v)
        export_onnx(torch_enc, out, quantize="int8", int8_per_row=groups, int8_smooth=smooth)
        encs[v] = Encoder.from_pretrained(str(out))
    return encs


def measure(encs: dict[str, Any], sets: list, args) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per set: each encoder's nDCG@10 and the variants' deltas, cosines and bootstrap; and the
    per-query deltas ``{set: {head: (delta A, delta B)}}`` for the pooled bootstrap."""
    res: dict[str, Any] = {}
    deltas: dict[str, Any] = {}
    va, vb = args.variants
    for k, ds in enumerate(sets):
        t0 = time.perf_counter()
        pq, dense = {}, {}
        for name, enc in encs.items():
            pq[name], dense[name] = per_query(enc, ds)
        held = held_queries(ds) if ds.name.startswith("xquad") else set()
        mask = np.array([q in held for q in ds.query_ids])
        entry: dict[str, Any] = {
            "queries": len(ds.query_ids),
            "docs": len(ds.doc_ids),
            "held_queries": int(mask.sum()),
        }
        entry["torch"] = {h: float(pq["torch"][h].mean()) for h in SCORED}
        for v in args.variants:
            cos = (dense[v] * dense["torch"]).sum(1)
            d = {h: pq[v][h] - pq["torch"][h] for h in SCORED}
            entry[v] = {
                "cos_mean": float(cos.mean()),
                "cos_min": float(cos.min()),
                "delta": {h: float(d[h].mean()) for h in SCORED},
                "delta_held": {h: float(d[h][mask].mean()) for h in SCORED} if mask.any() else {},
                "delta_train": {h: float(d[h][~mask].mean()) for h in SCORED} if mask.any() else {},
            }
        entry["bootstrap"] = {
            h: paired_bootstrap(
                pq[va][h] - pq["torch"][h], pq[vb][h] - pq["torch"][h], args.boot, args.seed + k
            )
            for h in SCORED
        }
        res[ds.name] = entry
        deltas[ds.name] = {h: (pq[va][h] - pq["torch"][h], pq[vb][h] - pq["torch"][h]) for h in SCORED}
        print(f"{ds.name}: {len(ds.query_ids)} q, {len(ds.doc_ids)} d, {time.perf_counter() - t0:.0f} s: "
              + "  ".join(f"{v} dense {entry[v]['delta']['dense']:+.4f} cos {entry[v]['cos_mean']:.4f}"
                          for v in args.variants), flush=True)  # fmt: skip
    return res, deltas


def pooled_bootstrap(pairs: list[tuple[np.ndarray, np.ndarray]], n: int, seed: int) -> dict[str, float]:
    """The mean over the sets of ``|mean dA| - |mean dB|``, queries resampled within each set."""
    rng = np.random.default_rng(seed)
    diff = np.zeros(n)
    for da, db in pairs:
        idx = resample_index(len(da), n, rng)
        diff += np.abs(da[idx].mean(1)) - np.abs(db[idx].mean(1))
    diff /= len(pairs)
    lo, hi = interval(diff)
    point = float(np.mean([abs(da.mean()) - abs(db.mean()) for da, db in pairs]))
    return {"diff": point, "lo": float(lo), "hi": float(hi), "p_b_closer": float((diff > 0).mean())}


def summary(res: dict[str, Any], deltas: dict[str, Any], args) -> dict[str, Any]:
    """Mean |delta| over the sets per head and variant, how many sets each variant is closer on,
    and the pooled paired bootstrap of the mean |delta| difference."""
    out: dict[str, Any] = {}
    variants = args.variants
    va, vb = variants
    for h in SCORED:
        abs_d = {v: [abs(e[v]["delta"][h]) for e in res.values()] for v in variants}
        out[h] = {
            **{f"mean_abs_delta[{v}]": float(np.mean(abs_d[v])) for v in variants},
            **{f"max_abs_delta[{v}]": float(np.max(abs_d[v])) for v in variants},
            "sets_b_closer": int(sum(b < a for a, b in zip(abs_d[va], abs_d[vb]))),
            "sets_a_closer": int(sum(a < b for a, b in zip(abs_d[va], abs_d[vb]))),
            "pooled_bootstrap": pooled_bootstrap([d[h] for d in deltas.values()], args.boot, args.seed),
        }
    out["cos_mean"] = {v: float(np.mean([e[v]["cos_mean"] for e in res.values()])) for v in variants}
    out["cos_min"] = {v: float(np.min([e[v]["cos_min"] for e in res.values()])) for v in variants}
    return out


def report(res: dict[str, Any], summ: dict[str, Any], args, cpu: tuple[str, str], command: str) -> str:
    va, vb = args.variants
    lines = [
        f"# int8 export variants on independent sets: {va} vs {vb} (bench/int8_confirm.py)",
        "",
        f"Command: `{command}`",
        "",
        f"CPU `{cpu[0]}`, flags (/proc/cpuinfo): `{cpu[1]}`; {platform.python_version()}, "
        f"{args.threads} threads. Bundled all-MiniLM-L6-v2 with all three heads (as the gate), torch fp32 "
        f"against its int8 ONNX export with per-token activation scales on A = ({va}) and B = ({vb}) "
        "(the other MatMuls one scale per tensor; '+smooth': SmoothQuant, alpha 0.5 unless given, on the "
        "inputs of Q/K/V and the FFN up projection, embforge.export.smooth). XQuAD: all questions of each language against its 240 "
        "paragraphs (none of these languages is bundled, so neither the gate's questions nor the dev texts); "
        f"dbpedia: every query against its relevant documents + random others ({args.dbpedia_docs} docs). "
        f"Delta = int8 nDCG@10 - torch fp32 nDCG@10. Bootstrap: {args.boot} resamples of the queries, paired, "
        "of |delta A| - |delta B| (> 0: B closer to fp32).",
        "",
        "| set | q / docs | head | torch fp32 | delta A | delta B | A held / train | B held / train | |dA|-|dB| [95%] | P(B closer) |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: |",
    ]
    for name, e in res.items():
        for h in SCORED:
            b = e["bootstrap"][h]
            split = {
                v: f"{e[v]['delta_held'][h]:+.4f} / {e[v]['delta_train'][h]:+.4f}"
                if e[v]["delta_held"]
                else ""
                for v in (va, vb)
            }
            lines.append(
                f"| {name} | {e['queries']} / {e['docs']} | {h} | {e['torch'][h]:.4f} | {e[va]['delta'][h]:+.4f} | "
                f"{e[vb]['delta'][h]:+.4f} | {split[va]} | {split[vb]} | {b['diff']:+.4f} [{b['lo']:+.4f}, "
                f"{b['hi']:+.4f}] | {b['p_b_closer']:.2f} |"
            )
    lines += ["", "| set | dense cos A mean / min | dense cos B mean / min |", "| --- | --- | --- |"]
    for name, e in res.items():
        lines.append(
            f"| {name} | {e[va]['cos_mean']:.4f} / {e[va]['cos_min']:.4f} | {e[vb]['cos_mean']:.4f} / {e[vb]['cos_min']:.4f} |"
        )
    lines += [
        "",
        f"Summary over the {len(res)} sets (pooled: mean over the sets of |dA| - |dB|, queries resampled "
        "within each set; > 0: B closer):",
        "",
        "| head | mean abs delta A | mean abs delta B | max abs delta A | max abs delta B | sets A / B closer | pooled |dA|-|dB| [95%] | P(B closer) |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]  # fmt: skip
    for h in SCORED:
        s, p = summ[h], summ[h]["pooled_bootstrap"]
        lines.append(
            f"| {h} | {s[f'mean_abs_delta[{va}]']:.4f} | {s[f'mean_abs_delta[{vb}]']:.4f} | "
            f"{s[f'max_abs_delta[{va}]']:.4f} | {s[f'max_abs_delta[{vb}]']:.4f} | {s['sets_a_closer']} / "
            f"{s['sets_b_closer']} | {p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] | {p['p_b_closer']:.2f} |"
        )
    if all(e[v]["delta"]["sparse"] == 0 for e in res.values() for v in (va, vb)):
        lines += [
            "",
            "sparse: the same nDCG@10 as torch fp32 in every set: the bundled model's sparse head is untrained "
            "(W_lex = 0, bias 0.4: every token weighs 0.4 whatever the backbone computes), so int8 cannot move it.",
        ]
    lines += [
        "",
        f"Dense cosine over all sets: A mean {summ['cos_mean'][va]:.4f}, min {summ['cos_min'][va]:.4f}; "
        f"B mean {summ['cos_mean'][vb]:.4f}, min {summ['cos_min'][vb]:.4f}.",
        "",
        result_line(summ, va, vb),
    ]
    return "\n".join(lines) + "\n"


def result_line(summ: dict[str, Any], va: str, vb: str) -> str:
    """The RESULT line: hybrid mean / largest |delta nDCG@10| over sets and heads, dense cosine; a = A, b = B."""

    def worst(v: str) -> float:
        return max(summ[h][f"max_abs_delta[{v}]"] for h in SCORED)

    return (
        f"RESULT int8_hybrid_mean_abs_delta_a={summ['hybrid'][f'mean_abs_delta[{va}]']:.4f} "
        f"int8_hybrid_mean_abs_delta_b={summ['hybrid'][f'mean_abs_delta[{vb}]']:.4f} "
        f"int8_max_abs_delta_a={worst(va):.4f} int8_max_abs_delta_b={worst(vb):.4f} "
        f"int8_dense_cos_a={summ['cos_mean'][va]:.4f} int8_dense_cos_b={summ['cos_mean'][vb]:.4f}"
    )


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--langs", default=",".join(LANGS), help="XQuAD languages (comma-separated)")
    ap.add_argument("--variants", nargs=2, default=list(VARIANTS), metavar=("A", "B"),
                    help="two int8 variants: INT8_PER_ROW groups comma-separated, +smooth[ALPHA] for SmoothQuant")  # fmt: skip
    ap.add_argument("--dbpedia-docs", type=int, default=1000, help="0: no dbpedia set")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--out", default=str(HERE / "results" / "int8_confirm"), help="writes OUT.md and OUT.json"
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cpu = cpu_info()
    print(f"CPU {cpu[0]}; flags: {cpu[1]}", flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="int8-confirm-") as tmp:
        work = Path(tmp)
        encs = export_variants(args.variants, work)
        sets = [xquad_set(lang, work) for lang in args.langs.split(",") if lang]
        if args.dbpedia_docs:
            sets.append(dbpedia_set(args.dbpedia_docs))
        res, deltas = measure(encs, sets, args)
    summ = summary(res, deltas, args)
    out = Path(args.out)
    meta = {
        "command": command,
        "cpu": cpu[0],
        "cpu_flags": cpu[1],
        "variants": args.variants,
        "threads": args.threads,
    }
    write_atomic(
        out.with_suffix(".json"), json.dumps({**meta, "sets": res, "summary": summ}, indent=1) + "\n"
    )
    text = report(res, summ, args, cpu, command)
    write_atomic(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
