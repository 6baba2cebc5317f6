"""`embforge export`: a checkpoint -> one ONNX graph with every head (optionally int8 or fp16)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from embforge.cli._common import heads_option, model_option, output_option, parse_heads, resolve_heads

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        model: Optional[str] = model_option(),
        output: Path = output_option("Folder to write (atomically): the ONNX graph, tokenizer and configs."),
        format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
        quantize: Optional[str] = typer.Option(
            None,
            "--quantize",
            help="Weights and compute: int8 (ONNX Runtime dynamic quantization) or fp16; unset = fp32. "
            "bf16 is refused with the reason (no bf16 kernels in ONNX Runtime's CPU provider).",
        ),
        heads: str = heads_option(
            "Heads in the graph, comma-separated: dense, sparse, multivector; 'auto' = the heads the "
            "checkpoint has trained weights for."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    ) -> None:
        """Export MODEL to ONNX: one graph whose outputs are every head (dense, per-token sparse weights,
        multi-vectors and their mask), loadable by `Encoder.from_pretrained(OUT)` and every command's
        --model, and by sentence-transformers (`SentenceTransformer(OUT, backend="onnx")`, dense).

        Example: embforge export -m BAAI/bge-m3 -o bge-m3-onnx --quantize int8
        """
        from embforge.errors import ConfigError
        from embforge.export import FORMATS, export_onnx

        if format not in FORMATS:
            raise ConfigError(f"--format {format!r}: choose from: {', '.join(FORMATS)}")
        head_list = parse_heads(heads) or resolve_heads(heads, model)
        res = export_onnx(model, output, quantize=quantize, heads=head_list, overwrite=overwrite)
        worst = max(res.max_abs_diff.values(), default=0.0)
        typer.echo(
            f"exported {model or 'bundled all-MiniLM-L6-v2'} -> {res.path} ({res.precision}, "
            f"{res.graph_bytes / 1e6:.1f} MB, outputs {', '.join(res.outputs)}; max |onnx - torch| on a "
            f"check batch {worst:.2e}) in {res.seconds:.1f} s",
            err=True,
        )
