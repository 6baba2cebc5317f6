"""`embforge index`: corpus (BEIR JSONL / BEIR dir) -> index directory (dense / sparse / multi-vector)."""

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
from embforge.errors import DataError


def read_corpus_texts(path: Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a BEIR corpus: a corpus .jsonl(.gz)/.parquet file or a BEIR directory.
    The text is ``title + " " + text`` (as BEIR evaluation does)."""
    from embforge.data.io import read_corpus

    if path.is_dir():
        cands = [path / n for n in ("corpus.jsonl", "corpus.jsonl.gz", "corpus.parquet")]
        found = [c for c in cands if c.exists()]
        if not found:
            raise DataError(
                f"{path}: no corpus.jsonl; a BEIR directory holds corpus.jsonl (+ queries.jsonl, qrels/)"
            )
        path = found[0]
    elif not path.exists():
        raise DataError(f"corpus {str(path)!r} does not exist; pass a corpus.jsonl or a BEIR directory")
    ids, texts = [], []
    for d in read_corpus(path):
        ids.append(d.id)
        texts.append(f"{d.title} {d.text}".strip() if d.title else d.text)
    if not ids:
        raise DataError(f"{path}: the corpus is empty")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        # set.add returns None: ``or seen.add(i)`` records i and keeps the test false
        dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]  # see above
        raise DataError(f"{path}: document id {dup!r} occurs more than once; ids must be unique")
    return ids, texts


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index(
        corpus: Path = typer.Argument(
            ..., help="BEIR corpus.jsonl ({_id, title, text} per line) or a BEIR directory."
        ),
        output: Path = output_option("Index directory to write (replaced atomically if it exists)."),
        model: Optional[str] = model_option(),
        heads: str = heads_option(),
        dense_index: str = typer.Option(
            "exact", "--dense-index", help="Dense backend: exact, int8, binary (rescored), hnsw, ivfpq."
        ),
        dim: Optional[int] = typer.Option(
            None, "--dim", help="Matryoshka: index the first DIM dense dims, renormalised."
        ),
        multivector_dtype: str = typer.Option(
            "float16",
            "--multivector-dtype",
            help="Token-vector storage: float16, int8 (per-token scale), float32.",
        ),
        batch_size: int = batch_size_option(),
        max_length: Optional[int] = max_length_option("Token limit per document (default: the model's)."),
        dtype: str = dtype_option(),
        backend: str = backend_option(),
        threads: Optional[int] = threads_option(),
        progress: Optional[bool] = progress_option(),
    ) -> None:
        """Encode a corpus and write a searchable index directory.

        Example: embforge index data/dbpedia_subset -o idx/ --model BAAI/bge-m3 --heads dense,sparse,multivector
        """
        import time

        from embforge.model.encoder import Encoder
        from embforge.search.retriever import DENSE_BACKENDS, build_index

        head_list = parse_heads(heads)
        DENSE_BACKENDS.get(dense_index)  # fail before loading anything
        claim(output, directory=True, inputs=[corpus])
        ids, texts = read_corpus_texts(corpus)
        head_list = head_list or resolve_heads(heads, model)
        set_threads(threads)
        t0 = time.perf_counter()
        enc = Encoder.from_pretrained(model, heads=head_list, backend=backend)
        show = show_progress(progress)
        idx = build_index(
            enc,
            ids,
            texts,
            heads=head_list,
            dense=dense_index,
            dim=dim,
            multivector_dtype=multivector_dtype,
            model=model,
            encode_kwargs={"batch_size": batch_size, "max_length": max_length, "dtype": dtype},
            progress=(lambda n, total: typer.echo(f"encoded {n}/{total}", err=True)) if show else None,
        )
        idx.save(output)
        typer.echo(
            f"indexed {len(ids)} documents ({', '.join(head_list)}) in {time.perf_counter() - t0:.1f}s -> {output}",
            err=True,
        )
