"""`embforge convert`: public dataset layouts -> embforge JSONL / BEIR directories."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    DEFAULT_MODEL_HELP,
    lang_option,
    languages_option,
    max_length_option,
    model_option,
    output_option,
    split_list,
)
from embforge.cli._outputs import claim
from embforge.errors import DataError

convert_app = typer.Typer(
    help="Convert datasets to embforge formats: SQuAD/XQuAD -> BEIR retrieval sets, STS -> scored pairs, "
    "NLI -> triples, Tatoeba -> bitext pairs. Outputs are written atomically.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SKIP_BAD = typer.Option(
    False,
    "--skip-bad",
    help="Write malformed input lines to OUTPUT.bad.jsonl (with their errors) instead of stopping; "
    "their count is reported.",
)


def _bad_sink(skip_bad: bool, out: Path):
    from embforge.data.io import BadLines

    if not skip_bad:
        return contextlib.nullcontext(None)
    return BadLines(out.with_name(out.name + ".bad.jsonl"))


def _report_bad(bad) -> None:
    if bad is not None:
        typer.echo(bad.summary(), err=True)


def _parse_cross(cross: list[str], langs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for c in cross:
        if c == "all":
            pairs += [(x, y) for x in langs for y in langs if x != y]
            continue
        parts = c.split(":")
        if len(parts) != 2 or not all(parts):
            raise DataError(f"--cross {c!r}: write QUERY_LANG:DOC_LANG, e.g. de:en, or 'all'")
        pairs.append((parts[0], parts[1]))
    return pairs


@convert_app.command("xquad")
def xquad(
    input_dir: Path = typer.Argument(..., help="Folder with xquad.<lang>.json files (SQuAD v1.1 layout)."),
    out_dir: Path = output_option("Output folder: <lang>/ and <qlang>-<dlang>/ BEIR sets."),
    languages: Optional[list[str]] = languages_option(),
    cross: Optional[list[str]] = typer.Option(
        None,
        "--cross",
        help="Cross-lingual set QUERY_LANG:DOC_LANG (repeat), or 'all' for every pair of --languages.",
    ),
    pairs: bool = typer.Option(False, "--pairs", help="Also write <lang>/pairs.jsonl (question, paragraph)."),
) -> None:
    """XQuAD / SQuAD-format QA -> BEIR retrieval (question -> its paragraph), per language and cross-lingual."""
    claim(out_dir, directory=True, inputs=[input_dir])
    from embforge.data.convert.squad import convert_xquad, find_xquad_files

    langs = split_list(languages) or sorted(find_xquad_files(input_dir))
    summary = convert_xquad(input_dir, out_dir, langs, _parse_cross(list(cross or []), langs), pairs)
    for name, counts in summary.items():
        typer.echo(f"{out_dir / name}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@convert_app.command("squad")
def squad(
    input_file: Path = typer.Argument(..., help="A SQuAD v1.1-format JSON file."),
    out_dir: Path = output_option("Output BEIR folder."),
    lang: str = lang_option("Language tag written into the queries, documents and pairs."),
    pairs: bool = typer.Option(False, "--pairs", help="Also write pairs.jsonl (question, paragraph)."),
) -> None:
    """One SQuAD-format file (your own QA data) -> a BEIR retrieval set."""
    claim(out_dir, directory=True, inputs=[input_file])
    from embforge.data.convert.squad import read_squad, squad_pairs, squad_to_beir
    from embforge.data.io import write_beir, write_jsonl

    paras = read_squad(input_file)
    counts = write_beir(out_dir, *squad_to_beir(paras, lang=lang))
    if pairs:
        counts["pairs"] = write_jsonl(out_dir / "pairs.jsonl", squad_pairs(paras, lang, input_file.stem))
    typer.echo(f"{out_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@convert_app.command("sts")
def sts(
    input_file: Path = typer.Argument(..., help="STS file: STS-B TSV, KorSTS TSV or stsb_multi_mt CSV."),
    output: Path = output_option("Output JSONL of scored pairs (.jsonl or .jsonl.gz)."),
    fmt: str = typer.Option("auto", "--format", help="stsb | korsts | csv | auto (from the first line)."),
    lang: str = lang_option("Language tag for every pair."),
    source: str = typer.Option("", "--source", help="Source tag; default: the input file name."),
    min_score: Optional[float] = typer.Option(
        None, "--min-score", help="Keep only pairs scoring >= this (e.g. 4 for training positives)."
    ),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """STS (sentence1, sentence2, score 0-5) -> scored-pair JSONL."""
    claim(output, inputs=[input_file])
    from embforge.data.convert.sts import read_sts
    from embforge.data.io import write_jsonl

    with _bad_sink(skip_bad, output) as bad:
        recs = read_sts(input_file, fmt, lang, source or input_file.stem, bad)
        if min_score is not None:
            recs = (r for r in recs if r.score >= min_score)
        n = write_jsonl(output, recs)
    typer.echo(f"{output}: {n} scored pairs")
    _report_bad(bad)


@convert_app.command("nli")
def nli(
    inputs: list[Path] = typer.Argument(
        ...,
        help="KorNLI/XNLI TSV files (sentence1, sentence2, gold_label), or one folder of SNLI line files.",
    ),
    output: Path = output_option("Output JSONL of triples."),
    split: Optional[list[str]] = typer.Option(
        None, "--split", help="For a folder: read s1.<split>, s2.<split>, labels.<split> (repeat)."
    ),
    pairing: str = typer.Option("first", "--pairing", help="first (one triple per premise) | zip | all."),
    lang: str = lang_option("Language tag for every triple."),
    source: str = typer.Option("", "--source", help="Source tag; default: the input name."),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """NLI pairs -> (anchor, entailment, contradiction) triples for supervised SimCSE / hard negatives."""
    claim(output, inputs=inputs)
    from embforge.data.convert.nli import NliStats, nli_triples, read_nli_lines, read_nli_tsv
    from embforge.data.io import write_jsonl

    stats = NliStats()
    with _bad_sink(skip_bad, output) as bad:

        def triples():
            for inp in inputs:
                if inp.is_dir():
                    if not split:
                        raise DataError(f"{inp} is a folder: name the line files with --split (e.g. dev)")
                    for s in split:
                        rows = read_nli_lines(inp / f"s1.{s}", inp / f"s2.{s}", inp / f"labels.{s}", bad)
                        yield from nli_triples(rows, pairing, source or f"{inp.name}-{s}", lang, stats)
                else:
                    yield from nli_triples(read_nli_tsv(inp, bad), pairing, source or inp.stem, lang, stats)

        n = write_jsonl(output, triples())
    typer.echo(
        f"{output}: {n} triples from {stats.pairs} pairs, {stats.premises} premises "
        f"({stats.premises_without_triple} without both entailment and contradiction, "
        f"{stats.no_gold} pairs without a gold label)"
    )
    _report_bad(bad)


@convert_app.command("tatoeba")
def tatoeba(
    input_dir: Path = typer.Argument(..., help="Folder with tatoeba.xxx-eng.{xxx,eng} line files."),
    out_dir: Path = output_option("Output folder: one xxx-eng.jsonl of pairs per language."),
    languages: Optional[list[str]] = languages_option(
        "3-letter codes (repeat or comma-separate); default all."
    ),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Tatoeba bitext -> pair JSONL (query = xxx sentence, positive = its English translation)."""
    claim(out_dir, directory=True, inputs=[input_dir])
    from embforge.data.convert.bitext import find_tatoeba_pairs, read_bitext
    from embforge.data.io import write_jsonl

    total = 0
    found = find_tatoeba_pairs(input_dir, split_list(languages) or None)
    for code, src, eng in found:
        out = out_dir / f"{code}-eng.jsonl"
        with _bad_sink(skip_bad, out) as bad:
            total += write_jsonl(out, read_bitext(src, eng, f"{code}-eng", "tatoeba", bad))
        if bad is not None and bad.count:
            _report_bad(bad)
    typer.echo(f"{out_dir}: {total} pairs in {len(found)} language pairs")


@convert_app.command("mix")
def mix(
    data_dir: Path = typer.Argument(..., help="Shared data folder with xquad/, nli/, sts/ and tatoeba/."),
    out_dir: Path = output_option("Output folder: train.jsonl, short.jsonl, eval/, manifest.json."),
    model: Optional[str] = model_option("Mining teacher: " + DEFAULT_MODEL_HELP),
    per_group: Optional[int] = typer.Option(
        None, "--per-group", help="At most this many queries per (source, language) group; default all."
    ),
    max_corpus: Optional[int] = typer.Option(
        None, "--max-corpus", help="At most this many mining candidates per group; default all."
    ),
    negatives: int = typer.Option(1, "--negatives", "-n", help="Hard negatives per query."),
    top_k: int = typer.Option(30, "--top-k", "-k", help="Candidates retrieved per query."),
    perc_pos: float = typer.Option(0.95, "--perc-pos", help="TopK-PercPos threshold (NV-Retriever: 0.95)."),
    min_sts_score: float = typer.Option(
        4.0, "--min-sts-score", help="STS pairs at least this are positives."
    ),
    languages: Optional[list[str]] = languages_option(
        "XQuAD languages (repeat or comma-separate); default all."
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the per-group sampling and the shuffle."),
    max_length: Optional[int] = max_length_option(),
) -> None:
    """The multilingual fine-tuning mix (XQuAD, NLI, STS >= 4, Tatoeba), mined with TopK-PercPos.

    Held apart for evaluation (written to OUT_DIR/eval/): XQuAD articles with index % 4 == 3 in every
    language, Tatoeba lines with index % 4 == 3. See embforge.data.mix for the sources.
    """
    from embforge.data.mining import MiningConfig
    from embforge.data.mix import MixConfig, build_mix
    from embforge.data.teachers import EncoderTeacher
    from embforge.model.encoder import Encoder

    claim(out_dir, directory=True, inputs=[data_dir])
    cfg = MixConfig(
        xquad_langs=tuple(split_list(languages)) or None,
        min_sts_score=min_sts_score,
        per_group=per_group,
        max_corpus=max_corpus,
        seed=seed,
        mining=MiningConfig(top_k=top_k, n_negatives=negatives, perc_pos=perc_pos, seed=seed),
    )
    teacher = EncoderTeacher(Encoder.from_pretrained(model, heads=("dense",)), max_length=max_length)
    manifest = build_mix(data_dir, out_dir, teacher, cfg, log=typer.echo)
    typer.echo(
        f"{out_dir / 'train.jsonl'}: {manifest['train']} examples; {manifest['short_of_negatives']} "
        f"queries short of {negatives} negatives in {out_dir / 'short.jsonl'}; held-apart sets in {out_dir / 'eval'}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(convert_app, name="convert")
