"""The report of ``bench/quality.py``: tables (mean and standard deviation over seeds), the issue's
target checks, a PNG plot, every stage's numbers in ``quality.json`` and the RESULT line."""

from __future__ import annotations

import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from embforge.eval.stats import interval, resampled_means
from quality import COLS, VARIANTS, atomic_json, machine

FULL_RUN = (
    "flock /tmp/embforge-bench.lock nice python bench/quality.py --workdir /tmp/q13-full --seeds 0 1 2 "
    "--steps 30 --threads 2"
)


TUNED_COL = "hybrid (tuned)"


def load_tuned(work: Path) -> dict[str, dict[int, dict]]:
    """tuned[variant][seed] = the ``tuned-<variant>-s<seed>`` stage's result (base: seed -1)."""
    out: dict[str, dict[int, dict]] = {}
    for p in sorted(work.glob("tuned-*.json")):
        name = p.stem.removeprefix("tuned-")
        v, _, s = name.rpartition("-s")
        if name == "base":
            v, s = "base", "-1"
        if v in VARIANTS or v == "base":
            out.setdefault(v, {})[int(s)] = json.loads(p.read_text())["result"]
    return out


def load_stages(work: Path) -> tuple[dict, dict[str, dict[int, dict]], list[str]]:
    """(mix/base stage records + ``tuned``, runs[variant][seed] = stage record, missing stage names)."""
    fixed: dict[str, Any] = {
        k: json.loads((work / f"{k}.json").read_text())
        for k in ("mix", "base")
        if (work / f"{k}.json").exists()
    }
    fixed["tuned"] = load_tuned(work)
    runs: dict[str, dict[int, dict]] = {}
    for p in sorted(work.glob("*-s*.json")):
        v, _, s = p.stem.rpartition("-s")
        if v in VARIANTS and s.isdigit():
            runs.setdefault(v, {})[int(s)] = json.loads(p.read_text())
    seeds = sorted({s for r in runs.values() for s in r})
    missing = [f"{v}-s{s}" for s in seeds for v in VARIANTS if s not in runs.get(v, {})]
    return fixed, runs, missing


def ndcg(res: dict, ds: str, head: str) -> float:
    h = res.get("retrieval", {}).get(ds, {}).get("heads", {}).get(head)
    return float(h["ndcg@10"]) if h else float("nan")


def ms(vals: list[float]) -> tuple[float, float]:
    a = np.asarray([v for v in vals if not np.isnan(v)], dtype=np.float64)
    if not len(a):
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def fmt(m: float, s: float) -> str:
    if np.isnan(m):
        return "n/a"
    return f"{m:.4f}" if np.isnan(s) else f"{m:.4f} ± {s:.4f}"


def set_means(runs: dict[int, dict], sets: list[str], head: str) -> list[float]:
    """Per seed: the mean over the retrieval sets."""
    return [float(np.mean([ndcg(r["result"], d, head) for d in sets])) for r in runs.values()]


def summary(fixed: dict, runs: dict, sets: list[str]) -> dict[str, Any]:
    """Every mean and std the tables and checks use."""
    base = fixed.get("base", {}).get("result", {})
    out: dict[str, Any] = {"variants": {}, "base": {}, "per_set": {}}
    out["seeds"] = {v: sorted(r) for v, r in runs.items()}
    for v, r in runs.items():
        out["variants"][v] = {h: ms(set_means(r, sets, h)) for h in COLS}
        out["per_set"][v] = {
            d: {h: ms([ndcg(x["result"], d, h) for x in r.values()]) for h in COLS} for d in sets
        }
    for h in (*COLS, "bm25"):
        out["base"][h] = float(np.mean([ndcg(base, d, h) for d in sets])) if base else float("nan")
    tuned = fixed.get("tuned", {})
    for v, by_seed in tuned.items():
        if v == "base":
            b = by_seed[-1]["retrieval"]
            out["base"][TUNED_COL] = float(np.mean([b[d]["tuned"] for d in sets]))
            continue
        if v not in runs:
            continue
        out["variants"][v][TUNED_COL] = ms(
            [float(np.mean([r["retrieval"][d]["tuned"] for d in sets])) for r in by_seed.values()]
        )
        for d in sets:
            out["per_set"][v][d][TUNED_COL] = ms([r["retrieval"][d]["tuned"] for r in by_seed.values()])
        same = {s: runs[v][s] for s in by_seed if s in runs[v]}  # the heads on the tuned seeds only
        out.setdefault("tuned_ref", {})[v] = {
            "seeds": sorted(same),
            "per_set_best": {
                d: max(ms([ndcg(x["result"], d, h) for x in same.values()])[0] for h in COLS[:3])
                for d in sets
            },
            "best_mean": max(ms(set_means(same, sets, h))[0] for h in COLS[:3]),
            "fixed_mean": ms(set_means(same, sets, "hybrid"))[0],
            "paired": paired_bootstrap(by_seed, same, sets),
            "paired_split": paired_bootstrap(by_seed, same, sets, "split"),
        }
    rrf = base.get("dense_bm25_rrf", {})
    out["base"]["dense_bm25_rrf"] = (
        float(np.mean([rrf[d] for d in sets if d in rrf])) if rrf else float("nan")
    )
    return out


def paired_bootstrap(
    by_seed: dict, same: dict, sets: list[str], col: str = "tuned", n: int = 2000
) -> dict[str, list[float]]:
    """Per set: [mean, 2.5%, 97.5%] of (hybrid ``col`` - the set's best head) over its queries, each
    query's nDCG@10 averaged over the seeds, resampling queries (n draws, fixed seed), plus
    ``"_mean"``: [the hybrid's mean nDCG@10 over the sets]. Empty when the tune stage predates
    per-query results or has no ``col``."""
    out: dict[str, list[float]] = {}
    rng = np.random.default_rng(0)
    means = []
    for d in sets:
        pqs = [r["retrieval"][d].get("per_query") for r in by_seed.values()]
        if not pqs or any(p is None or col not in p for p in pqs):
            return {}
        best = max(COLS[:3], key=lambda h: ms([ndcg(x["result"], d, h) for x in same.values()])[0])
        diff = np.mean([np.asarray(p[col]) - np.asarray(p[best]) for p in pqs], axis=0)
        means.append(float(np.mean([np.mean(p[col]) for p in pqs])))
        out[d] = [float(diff.mean()), *interval(resampled_means(diff, n, rng))]
    out["_mean"] = [float(np.mean(means))]
    return out


def base_bootstrap(fixed: dict, shipped: str, pairs: list[list[str]], n: int = 2000) -> list[str]:
    """For each (set, column) below base: a paired bootstrap over the set's queries of (shipped,
    each query averaged over the tuned seeds) - (base model; its hybrid the fixed 1 / 0.3 / 1), from
    the tune stage's per-query results (``tuned-base`` and ``tuned-<shipped>-s*``). Empty without them."""
    tuned = fixed.get("tuned", {})
    b = (tuned.get("base") or {}).get(-1, {}).get("retrieval")
    runs = list((tuned.get(shipped) or {}).values())
    if not pairs or b is None or not runs:
        return []
    rng = np.random.default_rng(0)
    cells = []
    for d, col in pairs:
        key = "tuned" if col == TUNED_COL else col
        pqs = [r["retrieval"][d].get("per_query", {}).get(key) for r in runs]
        ref = b.get(d, {}).get("per_query", {}).get("fixed" if col in ("hybrid", TUNED_COL) else col)
        if ref is None or any(p is None for p in pqs):
            return []
        diff = np.mean([np.asarray(p) for p in pqs], axis=0) - np.asarray(ref)
        lo, hi = interval(resampled_means(diff, n, rng))
        cells.append(f"{d} {col} {diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]{' significant' if hi < 0 else ''}")
    return [
        "  - paired bootstrap vs the base model over each set's queries (2,000 draws, 95% interval; base hybrid "
        f"= fixed 1/0.3/1): {'; '.join(cells)}"
    ]


def checks(sm: dict, fixed: dict, sets: list[str], shipped: str) -> list[str]:
    """The issue's targets, each PASS / FAIL / n/a with its numbers."""
    lines, ps = [], sm["per_set"]
    base = fixed.get("base", {}).get("result", {})

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    for v in [v for v in VARIANTS if v in ps]:
        bad = [d for d in sets if ps[v][d]["hybrid"][0] < max(ps[v][d][h][0] for h in COLS[:3]) - 1e-12]
        lines.append(
            f"- {mark(not bad)} {VARIANTS[v]}: hybrid >= best single head on every set (fails: {', '.join(bad) or 'none'})"
        )
    rrf = sm["base"]["dense_bm25_rrf"]
    lines += tuned_checks(sm, sets, mark)
    sv = sm["variants"].get(shipped)
    if sv:
        lines.append(
            f"- {mark(sv['hybrid'][0] >= rrf)} {VARIANTS[shipped]} hybrid mean {sv['hybrid'][0]:.4f} >= dense+BM25 RRF {rrf:.4f}"
        )
        st = sm["variants"].get("st")
        if st:
            lines.append(
                f"- {mark(sv['dense'][0] >= st['dense'][0])} shipped dense {sv['dense'][0]:.4f} >= ST MNRL dense {st['dense'][0]:.4f}"
            )
        nd = sm["variants"].get("m3_nodistill")
        if nd:
            for h in COLS[:3]:
                lines.append(
                    f"- {mark(sv[h][0] >= nd[h][0])} shipped {h} {sv[h][0]:.4f} >= without self-distillation {nd[h][0]:.4f}"
                )
        non_en = [d for d in sets if d.startswith("xquad-") and d != "xquad-en"]
        for name, group in (
            ("dbpedia", [d for d in sets if d == "dbpedia"]),
            ("non-English XQuAD mean", non_en),
        ):
            if group and base:
                s = float(np.mean([ps[shipped][d]["sparse"][0] for d in group]))
                b = float(np.mean([ndcg(base, d, "bm25") for d in group]))
                lines.append(f"- {mark(s >= b)} shipped sparse {s:.4f} >= BM25 {b:.4f} on {name}")
        if base:
            # the shipped model's hybrid is its own fusion (fusion.json, read by encode/eval/index/serve)
            # where the tune stage wrote one for every seed; else the paper's fixed weights
            own = TUNED_COL in sv and sm["tuned_ref"][shipped]["seeds"] == sm["seeds"].get(shipped)
            col = {h: (TUNED_COL if h == "hybrid" and own else h) for h in COLS}
            below = [
                [d, col[h]] for d in sets for h in COLS
                if ps[shipped][d][col[h]][0] < ndcg(base, d, h) - (0 if np.isnan(ps[shipped][d][col[h]][1]) else ps[shipped][d][col[h]][1])
            ]  # fmt: skip
            worse = [f"{d} {c}" for d, c in below]
            lines.append(
                f"- {mark(not worse)} no set/head of the shipped model below base by more than one std "
                f"(hybrid = {'its tuned fusion' if own else 'fixed 1/0.3/1'}; below: {', '.join(worse) or 'none'})"
            )
            lines += base_bootstrap(fixed, shipped, below)
    return lines


def tuned_checks(sm: dict, sets: list[str], mark) -> list[str]:
    """The hybrid targets for the tuned fusion of every tuned variant (mean over its seeds)."""
    lines, ps, rrf = [], sm["per_set"], sm["base"]["dense_bm25_rrf"]
    for v in [v for v in VARIANTS if v in ps and TUNED_COL in sm["variants"][v]]:
        ref = sm["tuned_ref"][v]  # heads and fixed hybrid on the same seeds as the tuned runs
        bad = [d for d in sets if ps[v][d][TUNED_COL][0] < ref["per_set_best"][d] - 1e-12]
        tm = sm["variants"][v][TUNED_COL][0]
        best = ref["best_mean"]
        lines.append(
            f"- {VARIANTS[v]}, seeds {ref['seeds']}: fixed hybrid {ref['fixed_mean']:.4f}, tuned {tm:.4f}, "
            f"best single head {best:.4f} (the tuned checks below compare on these seeds)"
        )
        lines.append(
            f"- {mark(not bad)} {VARIANTS[v]}: tuned hybrid >= best single head on every set (fails: {', '.join(bad) or 'none'})"
        )
        pb = ref.get("paired", {})
        if pb:
            sig = [f"{d} {pb[d][0]:+.3f} [{pb[d][1]:+.3f}, {pb[d][2]:+.3f}]" for d in sets if pb[d][2] < 0]
            rest = [f"{d} {pb[d][0]:+.3f} [{pb[d][1]:+.3f}, {pb[d][2]:+.3f}]" for d in bad if pb[d][2] >= 0]
            lines.append(
                f"  - paired bootstrap over queries (each query's nDCG@10 averaged over the seeds, 2,000 draws, "
                f"95% interval of tuned hybrid - best head): significantly below on {', '.join(sig) or 'no set'}; "
                f"the other failing sets are within noise: {', '.join(rest) or 'none'}"
            )
        ps_ = ref.get("paired_split", {})
        if ps_:
            below = [d for d in sets if ps_[d][0] < 0]
            sig = [f"{d} {ps_[d][0]:+.3f} [{ps_[d][1]:+.3f}, {ps_[d][2]:+.3f}]" for d in sets if ps_[d][2] < 0]
            lines.append(
                f"  - what-if, not shipped: the coverage split tune-fusion measured but did not keep (its dev "
                f"gain under the rule of that run, table above) gives mean {ps_['_mean'][0]:.4f}; below the best head on "
                f"{', '.join(below) or 'no set'}; significantly below on {', '.join(sig) or 'no set'}"
            )
        lines.append(
            f"- {mark(tm >= best)} {VARIANTS[v]}: tuned hybrid mean {tm:.4f} >= its best single head's mean {best:.4f}"
        )
        lines.append(
            f"- {mark(tm >= rrf)} {VARIANTS[v]}: tuned hybrid mean {tm:.4f} >= dense+BM25 RRF {rrf:.4f}"
        )
    return lines


def tables(sm: dict, fixed: dict, runs: dict, sets: list[str]) -> list[str]:
    base = fixed.get("base", {}).get("result", {})
    n = {v: len(r) for v, r in runs.items()}
    nt = {v: len(r) for v, r in fixed.get("tuned", {}).items()}
    cols = (*COLS, TUNED_COL)
    nan2 = (float("nan"), float("nan"))
    lines = ["## nDCG@10, mean over the retrieval sets (mean ± std over seeds)", "",
             "hybrid = the paper's fixed weighted sum 1 / 0.3 / 1; hybrid (tuned) = the fusion "
             "`embforge tune-fusion` picks on the dev split (below) and writes into the model folder.", "",
             "| variant | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]  # fmt: skip
    for v in VARIANTS:
        if v in sm["variants"]:
            seeds = f"{n[v]}" + (f" (tuned {nt[v]})" if v in nt else "")
            lines.append(
                f"| {VARIANTS[v]} | {seeds} | "
                + " | ".join(fmt(*sm["variants"][v].get(h, nan2)) for h in cols)
                + " |"
            )
    b = sm["base"]
    lines.append(
        "| base model, no training | - | "
        + " | ".join(fmt(b.get(h, float("nan")), float("nan")) for h in cols)
        + " |"
    )
    lines += [
        "",
        f"Baselines without training: BM25 (model tokenizer) {b['bm25']:.4f}; dense+BM25 RRF (k=60) {b['dense_bm25_rrf']:.4f}.",
        "",
    ]
    lines += fusion_table(fixed)
    lines += ["## nDCG@10 per set (dense / sparse / multi-vector / hybrid [/ hybrid tuned]; mean over seeds)", "",
              "| set | base | " + " | ".join(VARIANTS[v].split(" ")[0] for v in VARIANTS if v in runs) + " | BM25 | dense+BM25 RRF |",
              "|---" * (len(runs) + 4) + "|"]  # fmt: skip
    rrf = base.get("dense_bm25_rrf", {})
    tb = fixed.get("tuned", {}).get("base", {}).get(-1, {}).get("retrieval", {})
    for d in sets:
        cells = [
            " / ".join(f"{ndcg(base, d, h):.3f}" for h in COLS)
            + (f" / {tb[d]['tuned']:.3f}" if d in tb else "")
        ]
        for v in [v for v in VARIANTS if v in runs]:
            ps = sm["per_set"][v][d]
            cells.append(" / ".join(f"{ps[h][0]:.3f}" for h in cols if h in ps))
        lines.append(
            f"| {d} | "
            + " | ".join(cells)
            + f" | {ndcg(base, d, 'bm25'):.3f} | {rrf.get(d, float('nan')):.3f} |"
        )
    return lines + [""] + sts_bitext(fixed, runs)


def fusion_table(fixed: dict) -> list[str]:
    """What ``tune-fusion`` chose per model, on which dev split, and its dev gain over 1 / 0.3 / 1."""
    tuned = fixed.get("tuned", {})
    if not tuned:
        return []
    sizes = {_dev_size(r) for runs in tuned.values() for r in runs.values()}
    langs = {n for n, _, _ in sizes}
    n_lang = next(iter(langs)) if len(langs) == 1 else "N"
    _, n_q, n_d = next(iter(sizes)) if len(sizes) == 1 else (0, "Q", "D")
    lines = [
        "## Tuned fusion (`embforge tune-fusion` grid, mean nDCG@10 over the dev sets, shipped margin)", "",
        f"Dev split, disjoint from every evaluated query: questions of the XQuAD *training* articles that the "
        f"mix did not sample, {n_lang} languages x {n_q} queries, each against its language's corpus "
        f"sampled to {n_d} documents"
        + ("" if len(sizes) == 1 else " (they differ between runs: the 'dev sets' column gives each run's)")
        + "; where the 'dev sets' column says '+ nli', also sentence retrieval "
        "from the SNLI (en) and KorNLI (ko) test files, which the mix never reads (premise -> its entailed "
        "hypothesis, among the entailed and the contradicting hypotheses of the sampled premises; "
        "`bench/quality.py` `nli_dev_sets`). dbpedia has no dev queries (out of domain for the tuning).", "",
        "| model | seed | dev sets | chosen fusion | weights d / s / m | dev nDCG@10 paper 1/0.3/1 | dev best point | decision | coverage split (low-coverage queries' weights d / s / m, dev gain, its paired 95% interval and, since the rule took it, the cross-validated gain that decides) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for v in ("base", *VARIANTS):
        for seed, r in sorted(tuned.get(v, {}).items()):
            f, t = r["fusion"], r["fusion"]["tuned"]
            w = " / ".join(f"{f['weights'].get(h, 0):g}" for h in COLS[:3])
            bw = " / ".join(f"{t['best']['weights'].get(h, 0):g}" for h in COLS[:3])
            n_nli = sum(k.startswith("dev-nli") for k in r["dev"])
            sets = f"{len(r['dev']) - n_nli} xquad" + (f" + {n_nli} nli" if n_nli else "")
            if len(sizes) > 1:
                sets += " (Q={1}, D={2})".format(*_dev_size(r))
            lines.append(
                f"| {VARIANTS[v].split(' ')[0] + ' ' + v if v in VARIANTS else 'base model'} | {'-' if seed < 0 else seed} | {sets} | {f['fusion']} | {w} | "
                f"{t['paper_default_ndcg@10']:.4f} | {t['best']['fusion']} {bw}: {t['best']['ndcg@10']:.4f} | {t['decision']} | {_split_cell(t)} |"
            )
    return lines + [""]


def _dev_size(run: dict) -> tuple[int, int, int]:
    """(XQuAD dev languages, questions a language, documents a language) of one tune run."""
    xq = [v for k, v in run["dev"].items() if not k.startswith("dev-nli")]
    x0 = xq[0] if xq else {"queries": 0, "docs": 0}
    return len(xq), x0["queries"], x0["docs"]


def _split_cell(t: dict) -> str:
    """The coverage split ``tune-fusion`` measured (``eval.tune._tune_split``), or n/a for older runs."""
    c = t.get("low_coverage")
    if not c:
        return "n/a"
    if "low_weights" not in c:
        return c["decision"]
    lw = " / ".join(f"{c['low_weights'].get(h, 0):g}" for h in COLS[:3])
    hw = " / ".join(f"{c['weights'].get(h, 0):g}" for h in COLS[:3])
    ci = c.get("gain_ci95")
    ci_txt = f" [95% {ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else ""
    cv_txt = f"; cross-validated gain {c['cv_gain']:+.4f}" if "cv_gain" in c else ""
    return (
        f"{c['decision']} ({c['num_queries_low']} low queries: {lw}; others {hw}; "
        f"gain {c['gain']:+.4f}{ci_txt}{cv_txt})"
    )


def sts_bitext(fixed: dict, runs: dict) -> list[str]:
    base = fixed.get("base", {}).get("result", {})
    names = list(base.get("sts", {}))
    tat = list(base.get("bitext", {}))
    if not names and not tat:
        return []
    lines = ["## STS dev (Spearman, dense) and Tatoeba held-apart lines (accuracy@1, dense; mean over languages)", "",
             "| model | " + " | ".join(names) + " | Tatoeba mean |", "|---" * (len(names) + 2) + "|"]  # fmt: skip

    def row(label: str, results: list[dict]) -> str:
        cells = [fmt(*ms([r["sts"][s]["spearman"] for r in results if s in r.get("sts", {})])) for s in names]
        t = [float(np.mean([r["bitext"][x]["accuracy@1"] for x in tat])) for r in results if r.get("bitext")]
        return f"| {label} | " + " | ".join(cells) + f" | {fmt(*ms(t))} |"

    lines.append(row("base model", [base]))
    for v in VARIANTS:
        if v in runs:
            lines.append(row(VARIANTS[v], [x["result"] for x in runs[v].values()]))
    lines += ["", "Tatoeba accuracy@1 per language, base model: " + "; ".join(
        f"{x} {base['bitext'][x]['accuracy@1']:.2f}" for x in tat), ""]  # fmt: skip
    return lines


def plot(sm: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vs = [v for v in VARIANTS if v in sm["variants"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    cols = (*COLS, TUNED_COL)
    w = 0.8 / len(cols)
    for j, h in enumerate(cols):
        m = [sm["variants"][v].get(h, (np.nan, np.nan))[0] for v in vs]
        s = [np.nan_to_num(sm["variants"][v].get(h, (np.nan, np.nan))[1]) for v in vs]
        ax.bar(np.arange(len(vs)) + j * w, m, w, yerr=s, label=h, capsize=2)
    ax.axhline(sm["base"]["bm25"], color="k", ls="--", lw=1, label="BM25 (base tokenizer)")
    ax.axhline(sm["base"]["dense_bm25_rrf"], color="grey", ls=":", lw=1, label="dense+BM25 RRF (base)")
    ax.axhline(sm["base"]["hybrid"], color="r", ls="-.", lw=1, label="base hybrid")
    ax.set_xticks(
        np.arange(len(vs)) + 0.4 - w / 2, [VARIANTS[v].split(" ", 1)[0] + " " + v for v in vs], fontsize=8
    )
    ax.set_ylabel("mean nDCG@10 over retrieval sets")
    lo = np.nanmin([sm["variants"][v][h][0] for v in vs for h in COLS] + [sm["base"]["bm25"]]) - 0.05
    ax.set_ylim(max(0.0, lo), 1.0)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_commands(work: Path) -> list[str]:
    """``python bench/quality.py ARGV`` of every non-report invocation on ``work``, oldest first."""
    recs = sorted(work.glob("args-*.json"), key=lambda p: p.stat().st_mtime)
    seen, out = set(), []
    for p in recs:
        rec = json.loads(p.read_text())
        argv = list(rec["argv"])
        # the dev size's default changed (25 -> 300): name it where a tuning run relied on the default
        if rec.get("args", {}).get("stage") in ("tune", "all") and "--dev-queries" not in argv:
            argv += ["--dev-queries", str(rec["args"]["dev_queries"])]
        cmd = "python bench/quality.py " + shlex.join(argv)
        if "report" not in argv and cmd not in seen:
            seen.add(cmd)
            out.append(f"- `{cmd}`")
    return out


def stage_wall_minutes(work: Path) -> tuple[float, int]:
    """(minutes, stages): the wall seconds every finished stage of ``work`` recorded, added up (mix,
    base, each training run, each tune run; not the report)."""
    walls = []
    for p in work.glob("*.json"):
        if p.name.startswith("args-"):
            continue
        rec = json.loads(p.read_text())
        if isinstance(rec, dict) and isinstance(rec.get("wall_s"), (int, float)):
            walls.append(float(rec["wall_s"]))
    return sum(walls) / 60, len(walls)


def header(args, fixed: dict, runs: dict, missing: list[str], sets: list[str]) -> list[str]:
    base = fixed.get("base", {})
    mix = fixed.get("mix", {}).get("result", {})
    stages = [fixed.get("mix"), base] + [r for v in runs.values() for r in v.values()]
    loads = [x for st in stages if st for x in (st["loadavg_start"][0], st["loadavg_end"][0])]
    steps = sorted({len(r["result"].get("train_log", [])) for v in runs.values() for r in v.values()})
    sizes = base.get("result", {}).get("sets", {})
    minutes, n_stages = stage_wall_minutes(Path(args.workdir))
    return [
        f"# {args.title}", "",
        f"Command (report): `python bench/quality.py {shlex.join(sys.argv[1:])}`; stage commands are in "
        "`quality.json` (`args`).", "",
        f"**What ran:** {args.steps} steps x batch {args.batch_size} (+1 hard negative each, in-batch negatives), lr {args.lr}, "
        f"10% warm-up then linear decay, temperature {args.temperature}, queries <= {args.query_max_length} / documents <= "
        f"{args.doc_max_length} tokens, {args.threads} torch thread(s) per process, seeds {sorted({s for v in runs.values() for s in v})}; "
        f"(e) distils after step {int(round(args.steps * args.warmup_frac))}. Training records: {mix.get('train', 'n/a')} "
        f"({len(mix.get('groups', {}))} source/language groups, {mix.get('short_of_negatives', 'n/a')} queries short of "
        "negatives left out). Logged train-loss lines per run: " + ", ".join(map(str, steps)) + ".",
        f"**Sets (identical for every model; sampled where an `--eval-*` option says so):** {json.dumps(sizes)}", "",
        f"**Machine:** {json.dumps(machine())}; load average (1 min) at stage starts/ends: min {min(loads, default=float('nan')):.1f}, "
        f"max {max(loads, default=float('nan')):.1f}. Wall/CPU seconds per stage are in quality.json; "
        f"the {n_stages} stages' wall times add up to {minutes:.1f} min.", "",
        f"**Missing stages:** {', '.join(missing) or 'none'}.", "",
        "**Stage commands** (every invocation on this workdir, oldest first, from its `args-*.json`):", "",
        *stage_commands(Path(args.workdir)), "",
        f"**Full run on a quiet machine:** `{FULL_RUN}` (add `--eval-*` options only to sample).", "",
    ]  # fmt: skip


def steps_table(work: Path, extra: list[str], sets: list[str], base: dict) -> list[str]:
    """The sparse head against BM25 as training gets longer: every variant/seed of this workdir and
    of ``--steps-workdirs`` (same mix, base and sets, another ``--steps``), one row each."""
    dirs = [work, *[Path(x) for x in extra]]
    non_en = [d for d in sets if d.startswith("xquad-") and d != "xquad-en"]
    bm_db, bm_x = ndcg(base, "dbpedia", "bm25"), float(np.mean([ndcg(base, d, "bm25") for d in non_en]))
    lines = [
        "## The sparse head against BM25 by training steps (one row per model)", "",
        f"BM25 on the model tokenizer: dbpedia {bm_db:.4f}, non-English XQuAD mean {bm_x:.4f}. "
        "Extra rows come from workdirs that share this run's mix and base stages (`--steps-workdirs`).", "",
        "| steps | variant | seed | sparse dbpedia | sparse non-English XQuAD | dense mean | multi-vector mean | hybrid mean | train s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    rows = []
    for w in dirs:
        _, runs, _ = load_stages(w)
        for v in [v for v in VARIANTS if v in runs and v not in ("st", "infonce")]:
            for seed, r in sorted(runs[v].items()):
                res = r["result"]
                steps = len(res.get("train_log", []))
                rows.append((steps, list(VARIANTS).index(v), seed, v, res))
    for steps, _, seed, v, res in sorted(rows, key=lambda x: x[:3]):
        means = [float(np.mean([ndcg(res, d, h) for d in sets])) for h in ("dense", "multivector", "hybrid")]
        lines.append(
            f"| {steps} | {VARIANTS[v].split(' ')[0]} {v} | {seed} | {ndcg(res, 'dbpedia', 'sparse'):.4f} | "
            f"{float(np.mean([ndcg(res, d, 'sparse') for d in non_en])):.4f} | "
            + " | ".join(f"{m:.4f}" for m in means)
            + f" | {res.get('train_seconds', float('nan')):.0f} |"
        )
    return lines + [""]


def result_line(sm: dict, runs: dict, shipped: str) -> str:
    """The RESULT line: means over the retrieval sets and seeds of the shipped variant, the base
    model's baselines, and sentence-transformers' dense (left out when this workdir did not run it);
    the tuned hybrid only when its tuning covers every seed of the shipped variant."""
    sv = sm["variants"].get(shipped, {h: (float("nan"), 0) for h in COLS})
    st = sm["variants"].get("st", {"dense": (float("nan"), 0)})
    best = max(sv[h][0] for h in COLS[:3])
    full_tuned = sm.get("tuned_ref", {}).get(shipped, {}).get("seeds") == sorted(runs.get(shipped, {}))
    b = sm["base"]
    st_part = "" if math.isnan(st["dense"][0]) else f"st_ndcg10={st['dense'][0]:.4f} "
    return (f"RESULT {st_part}embforge_dense_ndcg10={sv['dense'][0]:.4f} "
            f"embforge_hybrid_ndcg10={sv['hybrid'][0]:.4f} "
            + (f"embforge_hybrid_tuned_ndcg10={sv[TUNED_COL][0]:.4f} " if TUNED_COL in sv and full_tuned else "") +
            f"best_single_head_ndcg10={best:.4f} "
            f"bm25_rrf_ndcg10={b['dense_bm25_rrf']:.4f} sparse_ndcg10={sv['sparse'][0]:.4f} bm25_ndcg10={b['bm25']:.4f}")  # fmt: skip


def write_report(args, work: Path, out_md: Path) -> None:
    from embforge.eval.report import atomic_write_text

    fixed, runs, missing = load_stages(work)
    base = fixed.get("base", {}).get("result", {})
    sets = list(base.get("retrieval", {}))
    sm = summary(fixed, runs, sets)
    lines = header(args, fixed, runs, missing, sets) + tables(sm, fixed, runs, sets)
    if base:
        lines += steps_table(work, list(getattr(args, "steps_workdirs", None) or []), sets, base)
    lines += ["## The issue's targets (shipped = " + VARIANTS[args.shipped] + ")", ""] + checks(
        sm, fixed, sets, args.shipped
    )
    png = out_md.with_suffix(".png")
    if sm["variants"]:
        plot(sm, png)
        lines += ["", f"![ablation]({png.name})"]
    lines += ["", result_line(sm, runs, args.shipped)]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out_md, text)
    stage_args = [json.loads(p.read_text()) for p in sorted(work.glob("args-*.json"))]
    atomic_json(
        out_md.with_suffix(".json"),
        {"summary": sm, "fixed": fixed, "runs": runs, "missing": missing, "args": stage_args},
    )
    print(text)
