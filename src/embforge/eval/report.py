"""Evaluation reports: ``report.json`` (every number) + ``report.md`` with PNG plots.

A report holds one or more *runs* (e.g. ``"base"`` and ``"fine-tuned"``), each the
output of :func:`embforge.eval.runner` style evaluation::

    {"retrieval": {"xquad-en": {"language": "en", "num_queries": 300, "num_docs": 240,
                                "heads": {"dense": {"ndcg@10": ..., ...}, "bm25": {...}},
                                "mrl": {"32": 0.41, "64": 0.52, ...}}},
     "sts": {"stsb-en-dev": {"language": "en", "spearman": ..., "pearson": ...}},
     "bitext": {"tatoeba-kor-eng": {"language": "ko", "accuracy@1": ...}},
     "health": {"xquad-en": {"alignment": ..., "uniformity": ...}}}

Every file is written atomically (temporary file + ``os.replace``), so a crash never
leaves a half-written report behind. Plots use matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import io
import json
import os
import platform
import shlex
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from embforge import __version__
from embforge.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "SCHEMA",
    "build_report",
    "write_report",
    "render_markdown",
    "atomic_write_text",
    "atomic_write_bytes",
    "comparison_rows",
    "comparison_table",
    "format_comparison",
    "merge_reports",
    "unique_labels",
]

SCHEMA = "embforge.report/1"
MAIN_METRIC = "ndcg@10"
_TABLE_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")
_HEAD_ORDER = ("bm25", "dense", "sparse", "multivector", "hybrid")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("embforge", "torch", "transformers", "numpy", "faiss-cpu", "bm25s", "sentence-transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    if "embforge" not in out:
        out["embforge"] = __version__
    return out


def build_report(
    runs: Mapping[str, Mapping[str, Any]],
    *,
    title: str = "embforge evaluation",
    model: Any = None,
    data: Any = None,
    command: str | list[str] | None = None,
    notes: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the JSON-serialisable report (adds versions, timestamp, command)."""
    if command is None:
        command = shlex.join(sys.argv)
    elif isinstance(command, list):
        command = shlex.join(command)
    rep: dict[str, Any] = {
        "schema": SCHEMA,
        "title": title,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "versions": _versions(),
        "model": model,
        "data": data,
        "runs": {k: dict(v) for k, v in runs.items()},
        "notes": list(notes or []),
    }
    if extra:
        rep.update(extra)
    return rep


# ---------------------------------------------------------------- markdown


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.4f}"
    return str(x)


def _heads_sorted(heads: Mapping[str, Any]) -> list[str]:
    known = [h for h in _HEAD_ORDER if h in heads]
    return known + sorted(h for h in heads if h not in _HEAD_ORDER)


def comparison_rows(
    report: Mapping[str, Any], before: str, after: str, metric: str = MAIN_METRIC
) -> list[tuple[str, str, float, float]]:
    """(dataset, head, before, after) for every retrieval cell present in both runs."""
    rb = report["runs"][before].get("retrieval", {})
    ra = report["runs"][after].get("retrieval", {})
    rows = []
    for ds in rb:
        if ds not in ra:
            continue
        hb, ha = rb[ds]["heads"], ra[ds]["heads"]
        for h in _heads_sorted(hb):
            if h in ha and metric in hb[h] and metric in ha[h]:
                rows.append((ds, h, float(hb[h][metric]), float(ha[h][metric])))
    return rows


def _run_tables(label: str, run: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for ds, res in run.get("retrieval", {}).items():
        meta = ", ".join(f"{k}={res[k]}" for k in ("language", "num_queries", "num_docs", "mode") if k in res)
        lines += [f"#### {label}: retrieval on `{ds}` ({meta})", ""]
        heads = res["heads"]
        cols = [m for m in _TABLE_METRICS if any(m in heads[h] for h in heads)]
        lines.append("| head | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for h in _heads_sorted(heads):
            lines.append(f"| {h} | " + " | ".join(_fmt(heads[h].get(c, "")) for c in cols) + " |")
        if res.get("mrl"):
            dims = sorted(res["mrl"], key=int)
            lines += ["", "Matryoshka (dense nDCG@10 by dimension):", ""]
            lines.append("| dim | " + " | ".join(dims) + " |")
            lines.append("|---" * (len(dims) + 1) + "|")
            lines.append("| nDCG@10 | " + " | ".join(_fmt(float(res["mrl"][d])) for d in dims) + " |")
        lines.append("")
    for kind, metric_names in (("sts", ("spearman", "pearson")), ("bitext", ("accuracy@1",))):
        sec = run.get(kind, {})
        if not sec:
            continue
        lines += [f"#### {label}: {kind}", "", "| set | language | " + " | ".join(metric_names) + " |"]
        lines.append("|---" * (len(metric_names) + 2) + "|")
        for name, r in sec.items():
            lines.append(
                f"| {name} | {r.get('language', '')} | "
                + " | ".join(_fmt(r.get(m, "")) for m in metric_names)
                + " |"
            )
        lines.append("")
    if run.get("health"):
        lines += [f"#### {label}: embedding health (lower is better for both)", ""]
        lines += ["| set | alignment | uniformity |", "|---|---|---|"]
        for name, r in run["health"].items():
            lines.append(f"| {name} | {_fmt(r['alignment'])} | {_fmt(r['uniformity'])} |")
        lines.append("")
    return lines


def comparison_table(report: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, str, list[float]]]]:
    """Side by side, every run: (run labels, rows of (data set, measure, one value per run)).

    Retrieval cells are nDCG@10 per head, STS cells Spearman, bitext cells accuracy@1; a run
    without a cell has NaN there. Rows keep the order of first appearance.
    """
    labels = list(report["runs"])
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for label, run in report["runs"].items():
        for ds, res in run.get("retrieval", {}).items():
            for h in _heads_sorted(res["heads"]):
                if MAIN_METRIC in res["heads"][h]:
                    cells.setdefault((ds, f"{h} {MAIN_METRIC}"), {})[label] = float(
                        res["heads"][h][MAIN_METRIC]
                    )
        for kind, metric in (("sts", "spearman"), ("bitext", "accuracy@1")):
            for name, r in run.get(kind, {}).items():
                if metric in r:
                    cells.setdefault((name, f"{kind} {metric}"), {})[label] = float(r[metric])
    nan = float("nan")
    return labels, [(ds, m, [v.get(lab, nan) for lab in labels]) for (ds, m), v in cells.items()]


def _cell(x: float) -> str:
    return "" if x != x else f"{x:.3f}"


def _delta(x: float, base: float) -> str:
    return "" if x != x or base != base else f"{x - base:+.3f}"


def format_comparison(report: Mapping[str, Any], markdown: bool = False) -> str:
    """The side-by-side table of :func:`comparison_table` with the change of every run against
    the first, as Markdown or as aligned plain text (3 decimals)."""
    labels, rows = comparison_table(report)
    head = ["data", "measure", *labels, *[f"{lab} - {labels[0]}" for lab in labels[1:]]]
    body = [[ds, m, *map(_cell, v), *[_delta(x, v[0]) for x in v[1:]]] for ds, m, v in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    fmt = [(str.ljust if i < 2 else str.rjust) for i in range(len(head))]
    return "\n".join(
        "  ".join(fmt[i](str(c), widths[i]) for i, c in enumerate(r)).rstrip() for r in [head, *body]
    )


def unique_labels(names: list[str], paths: list[str] | None = None) -> list[str]:
    """Labels that never collide: a repeated name becomes ``parent/name`` (from ``paths``), then
    ``name#2``, ``name#3``, ... so no result overwrites another."""
    paths = paths or names
    out: list[str] = []
    for name, path in zip(names, paths):
        label = name
        if names.count(name) > 1 and Path(path).parent.name:
            label = f"{Path(path).parent.name}/{name}"
        n = 2
        base = label
        while label in out:
            label, n = f"{base}#{n}", n + 1
        out.append(label)
    return out


def merge_reports(reports: list[Mapping[str, Any]], names: list[str], command: str) -> dict[str, Any]:
    """One report holding every run of ``reports`` (e.g. several ``report.json`` files), runs
    labelled ``names[i]`` (a report with several runs: ``names[i]/run``); labels stay unique."""
    runs: list[tuple[str, Mapping[str, Any]]] = []
    for name, rep in zip(names, reports):
        own = rep.get("runs", {})
        runs += [(name if len(own) == 1 else f"{name}/{k}", r) for k, r in own.items()]
    labels = unique_labels([k for k, _ in runs])
    return build_report(
        {lab: r for lab, (_, r) in zip(labels, runs)},
        title="embforge comparison",
        command=command,
        model={lab: rep.get("model") for lab, rep in zip(unique_labels(names), reports)},
        data=[rep.get("data") for rep in reports],
    )


def render_markdown(report: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> str:
    """The human-readable report; ``plots`` maps a caption to a PNG file name next to it."""
    v = report.get("versions", {})
    lines = [
        f"# {report.get('title', 'embforge evaluation')}",
        "",
        f"- created (UTC): {report.get('created_utc')}",
        f"- command: `{report.get('command')}`",
        f"- embforge {v.get('embforge', '?')}, torch {v.get('torch', '?')}, python {v.get('python', '?')}",
        f"- model: `{json.dumps(report.get('model'), ensure_ascii=False)}`",
        f"- data: `{json.dumps(report.get('data'), ensure_ascii=False)}`",
        "",
    ]
    labels = list(report["runs"])
    if len(labels) >= 2 and comparison_table(report)[1]:
        lines += [f"## {' vs '.join(labels)}", "", format_comparison(report, markdown=True), ""]
    for note in report.get("notes", []):
        lines.append(f"> {note}")
    if report.get("notes"):
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for caption, fname in plots.items():
            lines += [f"**{caption}**", "", f"![{caption}]({fname})", ""]
    lines += ["## Results", ""]
    for label, run in report["runs"].items():
        lines += [f"### {label}", ""] + _run_tables(label, run)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- plots


def _new_figure(width: float, height: float):
    import matplotlib  # optional heavy dependency (plots only): imported when a plot is drawn

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _grouped_bars(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, vals) in enumerate(series.items()):
        bars = ax.bar(x + (i - (n - 1) / 2) * width, vals, width, label=name)
        for bar, val in zip(bars, vals):
            if val == val:  # not NaN
                ax.annotate(
                    f"{val:.3f}",
                    (bar.get_x() + bar.get_width() / 2, val),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
    ax.set_xticks(x)
    ax.set_xticklabels(
        groups, rotation=0 if len(groups) <= 6 else 30, ha="center" if len(groups) <= 6 else "right"
    )


def plot_heads(report: Mapping[str, Any], path: Path, dataset: str) -> bool:
    """Bars of nDCG@10 per head on one data set, one colour per run."""
    runs = {
        k: r["retrieval"][dataset]["heads"]
        for k, r in report["runs"].items()
        if dataset in r.get("retrieval", {})
    }
    if not runs:
        return False
    heads: list[str] = []
    for h in runs.values():
        heads += [x for x in _heads_sorted(h) if x not in heads]
    nan = float("nan")
    series = {k: [float(h[x][MAIN_METRIC]) if x in h else nan for x in heads] for k, h in runs.items()}
    plt, fig, ax = _new_figure(max(5.0, 1.2 * len(heads) + 2), 3.6)
    _grouped_bars(ax, heads, series)
    ax.set_ylabel("nDCG@10")
    ax.set_ylim(0, min(1.05, max(v for s in series.values() for v in s if v == v) * 1.18 + 0.02))
    ax.set_title(f"nDCG@10 per head on {dataset}")
    ax.legend(fontsize=8, loc="upper left")
    _save(plt, fig, path)
    return True


def plot_mrl(report: Mapping[str, Any], path: Path) -> bool:
    """Matryoshka curve: dense nDCG@10 vs embedding dimension, one line per (run, data set)."""
    plt, fig, ax = _new_figure(6.0, 3.8)
    drawn = False
    all_dims: set[int] = set()
    styles = ("--", "-", ":", "-.")
    for ri, (label, run) in enumerate(report["runs"].items()):
        for ds, res in run.get("retrieval", {}).items():
            mrl = res.get("mrl") or {}
            if len(mrl) < 2:
                continue
            dims = sorted(mrl, key=int)
            all_dims.update(int(d) for d in dims)
            ax.plot(
                [int(d) for d in dims],
                [float(mrl[d]) for d in dims],
                marker="o",
                linestyle=styles[ri % len(styles)],
                label=f"{label}: {ds}",
            )
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(all_dims))
    ax.set_xticklabels([str(d) for d in sorted(all_dims)])
    ax.minorticks_off()
    ax.set_xlabel("embedding dimension (Matryoshka truncation)")
    ax.set_ylabel("nDCG@10 (dense)")
    ax.set_title("Matryoshka curve")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7)
    _save(plt, fig, path)
    return True


def _per_language(run: Mapping[str, Any], head: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for res in run.get("retrieval", {}).values():
        lang = res.get("language")
        if lang and head in res["heads"]:
            out.setdefault(lang, float(res["heads"][head][MAIN_METRIC]))
    return out


def plot_languages(report: Mapping[str, Any], path: Path, head: str = "dense") -> bool:
    """Bars of nDCG@10 per language (retrieval sets tagged with a language), one colour per run."""
    per = {label: _per_language(run, head) for label, run in report["runs"].items()}
    langs = sorted({lang for p in per.values() for lang in p})
    if len(langs) < 2:
        return False
    nan = float("nan")
    series = {label: [p.get(lang, nan) for lang in langs] for label, p in per.items()}
    plt, fig, ax = _new_figure(max(5.0, 0.9 * len(langs) * max(1, len(series)) + 2), 3.6)
    _grouped_bars(ax, langs, series)
    ax.set_ylabel(f"nDCG@10 ({head})")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"nDCG@10 per language ({head} head)")
    ax.legend(fontsize=8, loc="upper left")
    _save(plt, fig, path)
    return True


def plot_comparison(report: Mapping[str, Any], path: Path) -> bool:
    """Every cell of :func:`comparison_table` as grouped bars, one colour per run (legend = the
    run labels), values printed on the bars with 3 decimals; drawn for two runs or more."""
    labels, rows = comparison_table(report)
    if len(labels) < 2 or not rows:
        return False
    groups = [f"{ds}\n{m}" for ds, m, _ in rows]
    series = {lab: [v[i] for _, _, v in rows] for i, lab in enumerate(labels)}
    width = max(6.0, (0.35 * len(labels) + 0.5) * len(rows) + 2)
    plt, fig, ax = _new_figure(min(width, 40.0), 4.2)
    _grouped_bars(ax, groups, series)
    top = max((x for s in series.values() for x in s if x == x), default=1.0)
    ax.set_ylim(0, min(1.1, top * 1.15 + 0.02) if top <= 1 else top * 1.15)
    ax.set_ylabel("score (nDCG@10, Spearman, accuracy@1)")
    ax.set_title(" vs ".join(labels))
    ax.legend(fontsize=8, loc="lower right")
    _save(plt, fig, path)
    return True


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def write_report(
    report: Mapping[str, Any], out_dir: str | os.PathLike, *, plots: bool = True
) -> dict[str, Path]:
    """Write ``report.json``, the PNG plots and ``report.md`` into ``out_dir`` (atomically).

    Returns:
        name -> path of every file written (``json``, ``md`` and one per plot).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figs: dict[str, str] = {}
    if plots:
        if plot_comparison(report, out / "comparison.png"):
            figs["Side by side (" + " vs ".join(report["runs"]) + ")"] = "comparison.png"
        datasets: list[str] = []
        for run in report["runs"].values():
            datasets += [d for d in run.get("retrieval", {}) if d not in datasets]
        for ds in datasets:
            fname = f"heads_{_safe_name(ds)}.png"
            if plot_heads(report, out / fname, ds):
                figs[f"nDCG@10 per head: {ds}"] = fname
        if plot_mrl(report, out / "mrl_curve.png"):
            figs["Matryoshka curve (nDCG@10 vs dim)"] = "mrl_curve.png"
        if plot_languages(report, out / "languages.png"):
            figs["nDCG@10 per language (dense)"] = "languages.png"
        written.update({f"plot:{k}": out / v for k, v in figs.items()})
    rep = dict(report)
    rep["plots"] = figs
    written["json"] = atomic_write_text(
        out / "report.json", json.dumps(rep, indent=2, ensure_ascii=False) + "\n"
    )
    written["md"] = atomic_write_text(out / "report.md", render_markdown(rep, figs))
    return written
