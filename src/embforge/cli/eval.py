"""`embforge eval`: evaluate a model on BEIR directories, STS files and bitext pairs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    backend_option,
    batch_size_option,
    dtype_option,
    heads_option,
    lang_option,
    max_length_option,
    model_option,
    output_option,
    parse_heads,
    progress_option,
    resolve_heads,
    set_threads,
    show_progress,
    split_option,
    threads_option,
)
from embforge.cli._outputs import claim
from embforge.errors import ConfigError


def _parse_dims(dims: str) -> list[int] | None:
    if dims == "auto":
        return None
    if dims in ("", "none"):
        return []
    try:
        return [int(x) for x in dims.split(",")]
    except ValueError:
        raise ConfigError(
            f"--mrl-dims {dims!r}: give 'auto', 'none' or comma-separated ints like 32,64,128"
        ) from None


def format_run_table(run: dict, metric: str = "ndcg@10") -> str:
    """A plain-text table: one row per retrieval set, one column per head."""
    lines = []
    heads: list[str] = []
    for res in run.get("retrieval", {}).values():
        heads += [h for h in res["heads"] if h not in heads]
    if heads:
        w = max([len(n) for n in run["retrieval"]] + [8])
        lines.append(f"{metric:<{w}}  " + "  ".join(f"{h:>11}" for h in heads))
        for name, res in run["retrieval"].items():
            cells = [f"{res['heads'][h][metric]:>11.4f}" if h in res["heads"] else " " * 11 for h in heads]
            lines.append(f"{name:<{w}}  " + "  ".join(cells))
    for name, r in run.get("sts", {}).items():
        lines.append(f"STS {name}: Spearman {r['spearman']:.4f}  Pearson {r['pearson']:.4f}")
    for name, r in run.get("bitext", {}).items():
        lines.append(
            f"bitext {name}: accuracy@1 {r['accuracy@1']:.4f} (reverse {r['accuracy@1_reverse']:.4f})"
        )
    return "\n".join(lines)


def command_line(name: str, params: dict) -> str:
    """A reproducible ``embforge <name> --opt value ...`` line from a click context's params."""
    parts = ["embforge", name]
    for key, val in params.items():
        flag = "--" + key.replace("_", "-")
        if val is None or val == [] or val == ():
            continue
        if isinstance(val, bool):
            parts.append(flag if val else "--no-" + key.replace("_", "-"))
        elif isinstance(val, (list, tuple)):
            for v in val:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(val)]
    return shlex.join(parts)


def eval_command(
    ctx: typer.Context,
    model: Optional[list[str]] = model_option(
        "Model directory or hub id (embforge, BGE-M3 or sentence-transformers layout); repeat it to "
        "compare models side by side (e.g. base and fine-tuned). Default: the bundled all-MiniLM-L6-v2."
    ),
    name: Optional[list[str]] = typer.Option(
        None,
        "--name",
        help="Label of each --model in the report (repeat, same order); default: folder names.",
    ),
    index: Optional[Path] = typer.Option(
        None,
        "--index",
        help="Evaluate a saved index (from `embforge index`) on the --beir sets instead of "
        "exact per-head search; queries are encoded with --model or the model recorded in the index.",
    ),
    beir: list[Path] = typer.Option(
        [], "--beir", help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv). Repeatable."
    ),
    split: str = split_option(),
    lang: str = lang_option(
        "Language of every evaluated set; empty = from the data's 'lang' fields (a tag at the end of a "
        "set's name, as in xquad-de, is only the last resort, with a warning)."
    ),
    sts: list[Path] = typer.Option(
        [], "--sts", help="STS file (STS-B TSV, KorSTS TSV, stsb_multi_mt CSV or JSONL). Repeatable."
    ),
    bitext: list[str] = typer.Option(
        [], "--bitext", help="Line-aligned bitext 'SOURCE_FILE,TARGET_FILE' (accuracy@1). Repeatable."
    ),
    heads: str = heads_option(),
    hybrid: bool = typer.Option(
        True, help="Also evaluate the hybrid score w1*dense + w2*sparse + w3*multivector."
    ),
    weights: Optional[str] = typer.Option(
        None,
        help="Hybrid weights dense,sparse,multivector or head=weight pairs (a head left out weighs 0); "
        "default: the model's fusion.json, else the BGE-M3 paper's 1,0.3,1.",
    ),
    fusion: Optional[str] = typer.Option(
        None,
        "--fusion",
        help="Hybrid fusion: weighted, minmax, zscore or rrf (default: the model's fusion.json "
        "from `embforge tune-fusion`, else weighted).",
    ),
    mrl_dims: str = typer.Option(
        "auto", help="Matryoshka curve dims: 'auto' (32, 64, ... full), 'none', or e.g. 64,128,256."
    ),
    bm25: bool = typer.Option(True, help="Add a BM25 baseline row on the model's own tokenizer."),
    hybrid_bm25: bool = typer.Option(
        False,
        help="Add a hybrid+bm25 row: z-scores of the heads (1, 0.3, 1) + 0.3 z(BM25 on the model's "
        "tokenizer), ranked on the hybrid's candidates (an option, not the default; docs/retrieval.md).",
    ),
    rerank_top: Optional[int] = typer.Option(
        None,
        min=1,
        help="Re-rank the top N dense + top N sparse candidates with every head and the hybrid "
        "(as BGE-M3 evaluates) instead of scoring every head against the whole corpus (exact, default).",
    ),
    max_queries: Optional[int] = typer.Option(
        None, help="Evaluate only the first N judged queries of each BEIR set."
    ),
    max_pairs: Optional[int] = typer.Option(None, help="Use only the first N pairs of each bitext pair."),
    batch_size: int = batch_size_option(),
    max_length: Optional[int] = max_length_option(),
    output: Path = output_option("Directory for report.json, report.md and plots.", Path("runs/eval")),
    plots: bool = typer.Option(True, help="Write PNG plots next to report.md."),
    threads: Optional[int] = threads_option(),
    backend: str = backend_option(),
    progress: Optional[bool] = progress_option(),
    dtype: str = dtype_option(
        "Encode dtype of the retrieval sets: fp32, bf16, fp16 autocast, or auto (bf16 where the CPU "
        "multiplies it natively); the report's encode_dtype says which."
    ),
) -> None:
    """Evaluate models: retrieval per head + hybrid + BM25 + Matryoshka curve, STS, bitext; write a report.

    With several --model, the report puts them side by side (with the change against the first)
    and plots one bar per model.

    Example:
        embforge eval -m base/ -m tuned/ --beir xquad-en/ --sts sts-dev.csv -o runs/eval
    """
    if not (beir or sts or bitext):
        raise ConfigError("nothing to evaluate: give at least one --beir DIR, --sts FILE or --bitext SRC,TGT")
    models: list[str | None] = list(model or []) or [None]
    labels = _model_labels(models, list(name or []))
    head_p = parse_heads(heads)
    if index is not None and len(models) > 1:
        raise ConfigError("--index evaluates one index: give at most one --model (its query encoder)")
    from embforge.scoring import parse_weights

    hybrid_weights = parse_weights(weights, "--weights") if weights else None  # checked before any load
    if fusion is not None:
        _check_fusion_name(fusion)
    claim(output, directory=True, inputs=[*beir, *sts])
    sets = _load_sets(beir, split, max_queries, sts, bitext, max_pairs, lang or None)
    command = command_line("eval", ctx.params)
    data = {
        "beir": [{"path": str(p), "split": split} for p in beir],
        "sts": [str(p) for p in sts],
        "bitext": list(bitext),
        "max_queries": max_queries,
    }
    set_threads(threads)
    from embforge.model.encode import set_progress_default

    set_progress_default(show_progress(progress))
    if index is not None:
        if not sets[0]:
            raise ConfigError("--index needs at least one --beir DIR with the queries and qrels to evaluate")
        run = _evaluate_index(index, models[0], sets[0], batch_size)
        typer.echo(format_run_table(run))
        index_info = {"index": str(index), "query_model": models[0] or "recorded in the index"}
        _write({"index": run}, command=command, model=index_info, data=data, out=output, plots=plots)
        return
    runs: dict[str, dict] = {}
    info: dict[str, dict[str, object]] = {}
    for label, m in zip(labels, models):
        head_t = head_p or resolve_heads(heads, m)
        typer.echo(f"evaluating {label} ({m or 'bundled'}) with heads {', '.join(head_t)}")
        encoder = _load_encoder(m, head_t, backend)
        runs[label] = _evaluate_model(
            encoder,
            sets,
            heads=head_t,
            hybrid=hybrid,
            weights=_fusion_option(encoder, fusion, hybrid_weights),
            mrl_dims=_parse_dims(mrl_dims),
            bm25=bm25,
            batch_size=batch_size,
            max_length=max_length,
            rerank_top=rerank_top,
            hybrid_bm25=hybrid_bm25,
            dtype=dtype,
        )
        info[label] = {"path": m or "bundled all-MiniLM-L6-v2", "heads": list(head_t)}
        typer.echo(format_run_table(runs[label]))
    _write(runs, command=command, model=info, data=data, out=output, plots=plots)


def _model_labels(models: list[str | None], names: list[str]) -> list[str]:
    """One unique label per --model: its --name, else the model folder's name (parent/name when
    two share a name), so no model's results overwrite another's."""
    from embforge.eval.report import unique_labels

    if names and len(names) != len(models):
        raise ConfigError(f"--name given {len(names)} times for {len(models)} --model: give one per model")
    if names:
        if len(set(names)) != len(names):
            raise ConfigError(f"--name {names}: the labels must differ")
        return names
    paths = [m or "all-MiniLM-L6-v2" for m in models]
    return unique_labels([Path(p.rstrip("/")).name or p for p in paths], paths)


def _check_fusion_name(fusion: str) -> None:
    from embforge.scoring import FUSIONS

    if fusion not in FUSIONS.names():
        raise ConfigError(f"--fusion {fusion!r} is not known; choose from: {', '.join(FUSIONS.names())}")


def _fusion_option(encoder, fusion: str | None, weights: dict[str, float] | None):
    """--fusion / --weights on top of the model's fusion.json: a weights mapping, a ModelFusion or None
    (None and a mapping leave the rest to the model's own fusion, ``eval.runner.hybrid_fusion``)."""
    from embforge.model.fusion import ModelFusion

    own = getattr(encoder, "fusion", None) or ModelFusion()
    if fusion is None or (fusion == own.fusion and weights is None):
        return weights  # the model's own fusion (with its coverage split, if any)
    r = own.resolve(fusion, weights)
    return ModelFusion(r["fusion"], r["weights"], own.rrf_k)


def _load_sets(
    beir: list[Path],
    split: str,
    max_queries: int | None,
    sts: list[Path],
    bitext: list[str],
    max_pairs: int | None,
    lang: str | None = None,
) -> tuple[list, list, list]:
    """(retrieval sets, STS sets, bitext sets) read from the command's paths; bad --bitext fails first."""
    from embforge.eval.datasets import load_beir, load_bitext, load_sts
    from embforge.eval.report import unique_labels

    pairs = [spec.split(",") for spec in bitext]
    for spec, parts in zip(bitext, pairs):
        if len(parts) != 2:
            raise ConfigError(f"--bitext {spec!r}: give two files separated by a comma: SOURCE,TARGET")
    # results are keyed by these names: two files called sts-dev.csv become dir1/sts-dev, dir2/sts-dev
    bnames = unique_labels([Path(p[0]).name for p in pairs], [p[0] for p in pairs])
    bitext_sets = [
        load_bitext(p[0], p[1], name=n, language=lang, max_pairs=max_pairs) for p, n in zip(pairs, bnames)
    ]
    rnames = unique_labels([Path(p).resolve().name for p in beir], [str(Path(p).resolve()) for p in beir])
    retrieval_sets = [
        load_beir(p, split=split, name=n, language=lang, max_queries=max_queries)
        for p, n in zip(beir, rnames)
    ]
    snames = unique_labels([_stem(p) for p in sts], [str(Path(p).resolve()) for p in sts])
    sts_sets = [load_sts(p, name=n, language=lang) for p, n in zip(sts, snames)]
    return retrieval_sets, sts_sets, bitext_sets


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".jsonl.gz", ".tsv.gz", ".csv.gz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _evaluate_index(index: Path, model: str | None, retrieval_sets: list, batch_size: int) -> dict:
    """Retrieval metrics of a saved index (queries encoded by ``model`` or the index's own)."""
    from embforge.eval.runner import evaluate_index
    from embforge.search.retriever import Retriever

    retriever = Retriever.load(index, model=model)
    run: dict[str, dict] = {"retrieval": {}}
    for data in retrieval_sets:
        run["retrieval"][data.name] = evaluate_index(retriever, data, batch_size=batch_size)
    return run


def _evaluate_model(encoder, sets: tuple[list, list, list], **options) -> dict:
    """``evaluate_all`` on (retrieval, STS, bitext) sets, logging to the terminal."""
    from embforge.eval.runner import evaluate_all

    retrieval_sets, sts_sets, bitext_sets = sets
    return evaluate_all(encoder, retrieval_sets, sts_sets, bitext_sets, log=typer.echo, **options)


def _write(runs: dict, *, command: str, model: dict, data: dict, out: Path, plots: bool) -> None:
    """report.json + report.md (+ plots) under ``out``; several runs are printed side by side."""
    from embforge.eval.report import build_report, format_comparison, write_report

    report = build_report(runs, command=command, model=model, data=data)
    if len(runs) > 1:
        typer.echo(format_comparison(report))
    files = write_report(report, out, plots=plots)
    typer.echo(f"wrote {files['json']} and {files['md']}")


def _load_encoder(model: str | None, heads: tuple[str, ...], backend: str = "auto"):
    from embforge.model.encoder import Encoder

    return Encoder.from_pretrained(model, heads=heads, backend=backend)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
