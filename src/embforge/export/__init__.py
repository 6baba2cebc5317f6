"""Export an encoder for other runtimes: ``export_onnx`` (one ONNX graph with every head; int8/fp16).

Load an exported folder with ``Encoder.from_pretrained(folder)`` (ONNX Runtime backend,
``embforge.model.onnx_encoder``) or, for its dense part, ``SentenceTransformer(folder, backend="onnx")``.
"""

from embforge.export.onnx import FORMATS, QUANTIZE, ExportResult, export_onnx

__all__ = ["FORMATS", "QUANTIZE", "ExportResult", "export_onnx"]
