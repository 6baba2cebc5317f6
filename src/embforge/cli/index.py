"""`embforge index`: corpus (BEIR JSONL / BEIR dir) -> index directory (dense / sparse / multi-vector)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import (
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


def embedding_batches(corpus: Path, enc, heads: tuple[str, ...], encode_kwargs: dict, block: int = 4096):
    """(ids, Embeddings, payloads) blocks: read from the shards of `embforge encode CORPUS -o DIR/`
    (no re-encoding), or streamed from the corpus and encoded block by block."""
    from embforge.data.shards import is_shard_dir, iter_corpus_rows, iter_shards
    from embforge.model.sharded import iter_shard_chunks

    if is_shard_dir(corpus):
        for s in iter_shards(corpus, heads):
            yield s.ids, s.embeddings, [{"title": t, "text": x} for t, x in zip(s.titles, s.texts)]
        return
    for _, rows in iter_shard_chunks(iter_corpus_rows(corpus), block):
        emb = enc.encode([r.passage for r in rows], role="document", heads=heads, **encode_kwargs)
        yield [r.id for r in rows], emb, [{"title": r.title, "text": r.text} for r in rows]


def shard_settings(corpus: Path, heads: str, model: str | None) -> tuple[tuple[str, ...], str | None, dict]:
    """Heads, model and encode options recorded by a sharded encode (``--heads auto`` = all its heads)."""
    from embforge.data.shards import read_manifest

    m = read_manifest(corpus)
    asked = parse_heads(heads) or tuple(m["heads"])
    missing = [h for h in asked if h not in m["heads"]]
    if missing:
        raise DataError(
            f"{corpus}: the shards hold {', '.join(m['heads'])}, not {missing[0]}; encode that head too"
        )
    return asked, model or m.get("model"), dict(m.get("encode") or {})


def index_from_batches(output: Path, backend: str, head_list, batches, make, meta: dict) -> int:
    """Add every block to the index made by ``make()`` and save it to ``output``; returns the count."""
    idx = make()
    n = 0
    for ids, emb, payloads in batches:
        if backend == "qdrant":
            idx.add(ids, emb, payloads)
        else:
            idx.add(ids, emb)
        n += len(ids)
    idx.meta = meta
    idx.save(output)
    return n


def index_scaled(
    corpus: Path,
    output: Path,
    model: str | None,
    heads: str,
    backend: str,
    url: str | None,
    collection: str,
    quantization: str,
    encode_kwargs: dict,
    threads: int | None,
    dense_index: str,
    multivector_index: str = "exact",
    multivector_dtype: str = "float16",
) -> None:
    """`embforge index` into Qdrant, or into a hybrid folder from shards."""
    import time

    from embforge.data.shards import is_shard_dir
    from embforge.index.qdrant import QUANTIZATIONS, QdrantIndex
    from embforge.search.retriever import DENSE_BACKENDS, MULTIVECTOR_BACKENDS, make_hybrid, recorded_model

    if backend not in ("hybrid", "qdrant"):
        raise ConfigError(f"--backend {backend!r}; choose from: hybrid, qdrant")
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization {quantization!r}; choose from: {', '.join(QUANTIZATIONS)}")
    DENSE_BACKENDS.get(dense_index)
    MULTIVECTOR_BACKENDS.get(multivector_index)
    if backend == "qdrant" and multivector_index != "exact":
        raise ConfigError(
            f"--multivector-index {multivector_index} is for embforge's own index folder; Qdrant stores and "
            "searches multi-vectors itself: drop the option or use --backend hybrid"
        )
    claim(output, directory=True, inputs=[corpus])
    set_threads(threads)
    t0 = time.perf_counter()
    enc = None
    if is_shard_dir(corpus):
        head_list, model, encode_kwargs = shard_settings(corpus, heads, model)
    else:
        from embforge.model.encoder import Encoder

        head_list = resolve_heads(heads, model)
        enc = Encoder.from_pretrained(model, heads=head_list)
    kw = {
        k: v
        for k, v in encode_kwargs.items()
        if k in ("batch_size", "max_length", "dtype", "dim", "long_inputs")
    }
    meta = {
        "encoder": {
            "model": recorded_model(model),
            "heads": list(head_list),
            "dim": kw.get("dim"),
            "max_length": kw.get("max_length"),
        }
    }

    def make():
        if backend == "qdrant":
            return QdrantIndex.open(
                output, heads=head_list, url=url, collection=collection, quantization=quantization
            )
        return make_hybrid(
            head_list, dense=dense_index, multivector_dtype=multivector_dtype, multivector=multivector_index
        )

    n = index_from_batches(
        output, backend, head_list, embedding_batches(corpus, enc, head_list, kw), make, meta
    )
    typer.echo(
        f"indexed {n} documents ({', '.join(head_list)}, {backend}) in {time.perf_counter() - t0:.1f}s -> {output}",
        err=True,
    )


def index_in_process(
    corpus: Path,
    output: Path,
    model: str | None,
    heads: str,
    layout: dict,
    encode_kwargs: dict,
    threads: int | None,
    progress: bool | None,
) -> None:
    """`embforge index` into embforge's own folder, encoding here (``layout``: ``build_index``'s
    dense / dim / multivector_dtype / multivector)."""
    import time

    from embforge.model.encoder import Encoder
    from embforge.search.retriever import DENSE_BACKENDS, MULTIVECTOR_BACKENDS, build_index

    head_list = parse_heads(heads)
    DENSE_BACKENDS.get(layout["dense"])  # fail before loading anything
    MULTIVECTOR_BACKENDS.get(layout["multivector"])
    claim(output, directory=True, inputs=[corpus])
    ids, texts = read_corpus_texts(corpus)
    head_list = head_list or resolve_heads(heads, model)
    set_threads(threads)
    t0 = time.perf_counter()
    enc = Encoder.from_pretrained(model, heads=head_list)  # ONNX Runtime for an exported folder (auto)
    show = show_progress(progress)
    idx = build_index(
        enc,
        ids,
        texts,
        heads=head_list,
        model=model,
        encode_kwargs=encode_kwargs,
        progress=(lambda n, total: typer.echo(f"encoded {n}/{total}", err=True)) if show else None,
        **layout,
    )
    idx.save(output)
    typer.echo(
        f"indexed {len(ids)} documents ({', '.join(head_list)}) in {time.perf_counter() - t0:.1f}s -> {output}",
        err=True,
    )


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
            "exact", "--dense-index", help="Dense backend: exact, int8, binary (rescored), hnsw, ivf, ivfpq."
        ),
        dim: Optional[int] = typer.Option(
            None, "--dim", help="Matryoshka: index the first DIM dense dims, renormalised."
        ),
        multivector_dtype: str = typer.Option(
            "float16",
            "--multivector-dtype",
            help="Token-vector storage: float16, int8 (per-token scale), float32.",
        ),
        multivector_index: str = typer.Option(
            "exact",
            "--multivector-index",
            help="Multi-vector backend: exact (MaxSim over every document), plaid (PLAID candidates, exact "
            "re-score from the token store) or plaid-codes (no token store: centroid ids + PQ codes, about "
            "1/8 of float16, approximate scores).",
        ),
        batch_size: int = batch_size_option(),
        max_length: Optional[int] = max_length_option("Token limit per document (default: the model's)."),
        dtype: str = dtype_option(),
        threads: Optional[int] = threads_option(),
        progress: Optional[bool] = progress_option(),
        backend: str = typer.Option(
            "hybrid",
            "--backend",
            help="hybrid (embforge's npy/faiss folder) or qdrant (a Qdrant collection).",
        ),
        qdrant_url: Optional[str] = typer.Option(
            None,
            "--qdrant-url",
            help="Qdrant server/cluster URL (API key: $QDRANT_API_KEY); unset = embedded in OUT/qdrant.",
        ),
        collection: str = typer.Option("embforge", "--collection", help="Qdrant collection name."),
        quantization: str = typer.Option(
            "none", "--quantization", help="Qdrant dense quantization: none, scalar (int8), binary."
        ),
    ) -> None:
        """Encode a corpus (or read the shards of `embforge encode CORPUS -o DIR/`) and write a searchable index.

        Example: embforge index data/dbpedia_subset -o idx/ --model BAAI/bge-m3 --heads dense,sparse,multivector

        Qdrant from shards (no re-encoding): embforge index shards/ -o qidx/ --backend qdrant
        """
        kw = {"batch_size": batch_size, "max_length": max_length, "dtype": dtype}
        if backend == "qdrant" or (corpus / "manifest.json").is_file() or (corpus / "job.json").is_file():
            return index_scaled(corpus, output, model, heads, backend, qdrant_url, collection, quantization,
                                {**kw, "dim": dim}, threads, dense_index, multivector_index, multivector_dtype)  # fmt: skip
        layout = {
            "dense": dense_index,
            "dim": dim,
            "multivector_dtype": multivector_dtype,
            "multivector": multivector_index,
        }
        index_in_process(corpus, output, model, heads, layout, kw, threads, progress)
