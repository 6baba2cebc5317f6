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
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from embforge import __version__

__all__ = [
    "SCHEMA",
    "build_report",
    "write_report",
    "render_markdown",
    "atomic_write_text",
    "atomic_write_bytes",
    "comparison_rows",
]

SCHEMA = "embforge.report/1"
MAIN_METRIC = "ndcg@10"
_TABLE_METRICS = ("ndcg@10", "recall@100", "mrr@10", "map")
_HEAD_ORDER = ("bm25", "dense", "sparse", "multivector", "hybrid")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


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
    if len(labels) >= 2:
        b, a = labels[0], labels[-1]
        rows = comparison_rows(report, b, a)
        if rows:
            lines += [
                f"## {b} vs {a} (nDCG@10)",
                "",
                f"| data | head | {b} | {a} | change |",
                "|---|---|---|---|---|",
            ]
            for ds, h, x, y in rows:
                lines.append(f"| {ds} | {h} | {x:.4f} | {y:.4f} | {y - x:+.4f} |")
            lines.append("")
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
                    f"{val:.2f}",
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
