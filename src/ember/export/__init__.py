"""Export: a model in, a file for another runtime out (`export_onnx`)."""
from ember.export.onnx import ExportError, export_onnx

__all__ = ["ExportError", "export_onnx"]
