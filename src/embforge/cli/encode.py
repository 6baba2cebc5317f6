"""`embforge encode`: texts (JSONL or plain text) -> embeddings (.npy or JSONL)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
    backend_option,
    batch_size_option,
    dtype_option,
    heads_option,
    max_length_option,
    model_option,
    output_option,
    parse_heads,
    progress_option,
    resolve_heads,
    set_threads,
    show_progress,
    threads_option,
)
from embforge.cli._outputs import claim
from embforge.errors import ConfigError, DataError


def read_texts(path: Path, field: str = "text") -> tuple[list[str], list[str]]:
    """(ids, texts) from a .jsonl file (objects with ``field`` and optional "_id"/"id") or a text file
    (one text per non-empty line; ids are line numbers). Bad lines raise ``DataError`` with file:line."""
    from embforge.data.io import loads_json, open_text

    if not path.is_file():
        raise DataError(f"input file {str(path)!r} does not exist; check the path")
    ids, texts = [], []
    is_jsonl = path.suffix in {".jsonl", ".json", ".ndjson"}
    with open_text(path) as f:  # bad bytes, bad gzip: DataError naming file:line
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if not is_jsonl:
                ids.append(str(n))
                texts.append(line.rstrip("\n"))
                continue
            rec = loads_json(line, f"{path}:{n}")
            if not isinstance(rec, dict) or not isinstance(rec.get(field), str) or not rec[field].strip():
                raise DataError(
                    f"{path}:{n}: needs a non-empty string field {field!r} (got {str(line.strip())[:80]!r}); "
                    "fix the record or pick the field with --text-field"
                )
            ids.append(str(rec.get("_id", rec.get("id", n))))
            texts.append(rec[field])
    if not texts:
        raise DataError(f"{path}: no texts found; the file is empty")
    return ids, texts


def write_outputs(out: Path, ids: list[str], emb, heads: tuple[str, ...]) -> None:
    """.npy: the dense matrix (N, D) float32; .jsonl: one {"id", "dense", "sparse", "multivector"} per text."""
    import json

    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".npy":
        if heads != ("dense",):
            raise DataError(f"{out}: .npy holds only the dense head; ask --heads dense or write .jsonl")
        with tmp.open("wb") as f:
            np.save(f, emb.dense)
    elif out.suffix in {".jsonl", ".json", ".ndjson"}:
        with tmp.open("w", encoding="utf-8") as f:
            for i, id_ in enumerate(ids):
                rec: dict = {"id": id_}
                if emb.dense is not None:
                    rec["dense"] = [round(float(x), 7) for x in emb.dense[i]]
                if emb.sparse is not None:
                    rec["sparse"] = {str(k): round(v, 7) for k, v in emb.sparse.row(i).items()}
                if emb.multivector is not None:
                    rec["multivector"] = np.round(emb.multivector[i], 7).tolist()
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    else:
        raise DataError(f"output {str(out)!r}: unknown extension {out.suffix!r}; use .npy (dense) or .jsonl")
    tmp.replace(out)


def encode_sharded(
    corpus: Path,
    out: Path,
    model: str | None,
    heads: str,
    shard_size: int,
    text_field: str,
    threads: int | None,
    encode_kwargs: dict,
    engine: tuple[str, int, str | None] = ("torchrun", 1, None),
) -> None:
    """The sharded writer (``embforge.model.sharded``): this process's shards of ``corpus`` -> ``out/``;
    ``engine`` = (torchrun or ray, Ray workers, Ray address)."""
    from embforge.data.io import check_output
    from embforge.model.encoder import Encoder
    from embforge.model.sharded import dist_rank, encode_to_shards

    # not ``claim``: a failed or interrupted run keeps its finished shards, so a re-run resumes
    check_output(out, directory=True, inputs=[corpus])
    head_list = resolve_heads(heads, model)
    if engine[0] == "ray":
        from embforge.model.ray_engine import encode_to_shards_ray

        kw = {k: v for k, v in encode_kwargs.items() if k != "show_progress"}
        r = encode_to_shards_ray(corpus, out, head_list, shard_size, model=model, text_field=text_field,
                                 encode_kwargs=kw, workers=engine[1], threads=threads, address=engine[2])
        typer.echo(f"ray: encoded {len(r.encoded)} shard(s), {len(r.skipped)} already done, {r.rows} records -> {out}",
                   err=True)
        return
    if engine[0] != "torchrun":
        raise ConfigError(f"--engine {engine[0]!r}; choose from: torchrun, ray")
    rank, world = dist_rank()
    set_threads(threads)
    enc = Encoder.from_pretrained(model, heads=head_list)
    rep = encode_to_shards(
        enc,
        corpus,
        out,
        head_list,
        shard_size,
        model=model,
        text_field=text_field,
        encode_kwargs=encode_kwargs,
        rank=rank,
        world=world,
    )
    state = "complete, manifest.json written" if rep.complete else "waiting for the other processes' shards"
    typer.echo(
        f"rank {rank}/{world}: encoded {len(rep.encoded)} shard(s), {len(rep.skipped)} already done, "
        f"{rep.rows} records in {rep.shards} shard(s) -> {out} ({state})",
        err=True,
    )


def register(app: typer.Typer) -> None:
    @app.command("encode")
    def encode(
        input: Path = typer.Argument(
            ..., help="Texts: .jsonl (objects with a text field) or a text file, one per line."
        ),
        output: Path = output_option("Output: .npy (dense matrix) or .jsonl (all heads)."),
        model: Optional[str] = model_option(),
        heads: str = heads_option(
            "Heads, comma-separated: dense, sparse, multivector; 'auto' = the heads the checkpoint has "
            "trained weights for (dense only when the output is .npy)."
        ),
        dim: Optional[int] = typer.Option(
            None, "--dim", help="Matryoshka: keep the first DIM dense dims, renormalised."
        ),
        dtype: str = dtype_option(),
        backend: str = backend_option(),
        role: str = typer.Option(
            "document", "--role", help="query or document (selects the instruction prefix)."
        ),
        batch_size: int = batch_size_option(),
        max_length: Optional[int] = max_length_option(),
        long_inputs: str = typer.Option("truncate", "--long-inputs", help="truncate (warns) or mcls."),
        text_field: str = typer.Option("text", "--text-field", help="JSONL field holding the text."),
        threads: Optional[int] = threads_option(),
        progress: Optional[bool] = progress_option(),
        shard_size: Optional[int] = typer.Option(
            None,
            "--shard-size",
            help="Records per parquet shard; writes a sharded, resumable folder (the default, 10000, "
            "when OUT is a folder). Under torchrun each process encodes its share of the shards.",
        ),
        engine: str = typer.Option(
            "torchrun", "--engine", help="Sharded encode: torchrun (this process's share) or ray (Ray Data actors)."
        ),
        workers: int = typer.Option(2, "--workers", help="--engine ray: encoder actors (each --threads threads)."),
        ray_address: Optional[str] = typer.Option(
            None, "--ray-address", help="--engine ray: a cluster address ('auto' inside one); unset = a local Ray."
        ),
    ) -> None:
        """Encode texts with the dense / sparse / multi-vector heads.

        Example: embforge encode docs.jsonl -o docs.npy --dim 256

        Sharded (resumable; torchrun: one share per process): embforge encode corpus.jsonl -o shards/
        """
        from embforge.model.encoder import Encoder

        if shard_size is not None or output.is_dir() or output.suffix == "" or engine == "ray":
            enc_kw = {"dim": dim, "dtype": dtype, "batch_size": batch_size, "max_length": max_length}
            enc_kw |= {"long_inputs": long_inputs, "show_progress": show_progress(progress)}
            sharded = (shard_size or 10_000, text_field, threads, enc_kw, (engine, workers, ray_address))
            return encode_sharded(input, output, model, heads, *sharded)
        npy = output.suffix == ".npy"
        claim(output, inputs=[input])
        if not npy and output.suffix != ".jsonl":
            raise DataError(f"output {str(output)!r}: unknown extension {output.suffix!r}; use .npy (dense) or .jsonl")
        head_list = parse_heads(heads) or (("dense",) if npy else resolve_heads(heads, model))
        if npy and head_list != ("dense",):
            raise DataError(f"{output}: .npy holds only the dense head; ask --heads dense or write .jsonl")
        ids, texts = read_texts(input, text_field)
        set_threads(threads)
        enc = Encoder.from_pretrained(model, heads=head_list, backend=backend)
        emb = enc.encode(
            texts,
            role=role,
            heads=head_list,
            dim=dim,
            dtype=dtype,
            batch_size=batch_size,
            max_length=max_length,
            long_inputs=long_inputs,
            show_progress=show_progress(progress),
        )
        write_outputs(output, ids, emb, head_list)
        typer.echo(
            f"encoded {len(texts)} texts ({0 if emb.num_tokens is None else int(emb.num_tokens.sum())} tokens) -> {output}",
            err=True,
        )
