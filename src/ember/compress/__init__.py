"""Compression: a model in, a smaller or faster model out, with what it gained and what it cost measured.

`quantize` (int8 through ONNX Runtime) and `compress` (variants side by side in report.json / report.md).
"""
from ember.compress.quantize import QuantizationError, quantize

__all__ = ["quantize", "QuantizationError"]
