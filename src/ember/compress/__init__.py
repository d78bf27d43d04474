"""Compression: a model in, a smaller or faster model out, with what it gained and what it cost measured.

`quantize` (int8 through ONNX Runtime), `prune` (structured), `sparsify` (magnitude), `distill` (teacher to
student), and `report.compress` (the variants side by side in report.json / report.md).
"""
from ember.compress.distill import Distiller, distill
from ember.compress.prune import prune, sparsify
from ember.compress.quantize import QuantizationError, quantize

__all__ = ["quantize", "QuantizationError", "prune", "sparsify", "distill", "Distiller"]
