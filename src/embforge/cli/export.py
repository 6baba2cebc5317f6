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
        smooth_alpha: float = typer.Option(
            0.5,
            "--smooth-alpha",
            help="int8: SmoothQuant migration strength for the inputs of Q/K/V and the FFN up projection "
            "(halves the int8 error of MiniLM); 0 = no smoothing.",
        ),
        calibration: Optional[Path] = typer.Option(
            None,
            "--calibration",
            help="int8: a UTF-8 text file, one text a line, for the smoothing's activation ranges "
            "(default: seeded random words of the model's vocabulary; measured to give the same result).",
        ),
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
        if smooth_alpha < 0 or smooth_alpha >= 1:
            raise ConfigError(f"--smooth-alpha {smooth_alpha}: choose a value in [0, 1) (0 = no smoothing)")
        texts = None
        if calibration is not None:
            from embforge.data.io import read_text_file

            texts = [ln for ln in read_text_file(calibration).splitlines() if ln.strip()]
            if not texts:
                raise ConfigError(f"--calibration {calibration}: no non-empty lines; write one text a line")
        res = export_onnx(
            model, output, quantize=quantize, heads=head_list, overwrite=overwrite,
            int8_smooth=smooth_alpha or None, calibration=texts,
        )  # fmt: skip
        worst = max(res.max_abs_diff.values(), default=0.0)
        typer.echo(
            f"exported {model or 'bundled all-MiniLM-L6-v2'} -> {res.path} ({res.precision}, "
            f"{res.graph_bytes / 1e6:.1f} MB, outputs {', '.join(res.outputs)}; max |onnx - torch| on a "
            f"check batch {worst:.2e}) in {res.seconds:.1f} s",
            err=True,
        )
