"""ONNX export: a model in, an `.onnx` file (dynamic batch axis) and its JSON sidecar out.

The graph holds what torch computes, softmax included. What cannot live in the graph (class names, image
size and color mode, a text model's vocabulary) travels beside it in `<stem>.json`, so that `ember serve
model.onnx` preprocesses requests as training did. Every export is checked against ONNX Runtime on sample
inputs before the files are kept.
"""
import contextlib
import functools
import io
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

import ember
from ember.errors import EmberError
from ember.models.saving import write_atomically
from ember.models.sequential import layers_in_order

DEFAULT_OPSET = 18
INPUT, OUTPUT = "input", "output"
_DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "uint8": "UINT8"}


class ExportError(EmberError):
    """The model cannot be exported, or the exported graph disagrees with the model."""


@functools.cache
def datatype(dtype) -> str:
    """KServe v2 name of a NumPy or torch dtype ("FP32", "INT64", ...)."""
    name = str(dtype).removeprefix("torch.")  # slow enough to cache: the server asks for every response
    if name not in _DATATYPES:
        raise ExportError(f"inputs of dtype {name} are not supported")
    return _DATATYPES[name]


def input_spec(model, free_length: bool = True) -> dict:
    """{"name", "shape" (-1 for the batch and any free axis), "datatype"} of a built model's input. With
    `free_length`, token ids of a model that ignores padding may have any length (torch runs them as they
    come); exported graphs keep the length the model was built for, as torch.onnx's recurrent ops do not
    stay correct at other lengths."""
    shape = getattr(model, "input_shape", None)
    if not shape:
        raise ExportError(f"{type(model).__name__} has no known input shape: build it (model.build) or load a "
                          "model written by fit or `ember train`")
    dims = [-1, *shape]
    if free_length and not model.input_dtype.is_floating_point and model.ignores_padding_length():
        dims[-1] = -1  # token ids: any length, as the padding mask makes the length free
    return {"name": INPUT, "shape": dims, "datatype": datatype(model.input_dtype)}


def sample_inputs(spec: dict, batch: int, *, vocabulary: int | None = None, seed: int = 0) -> np.ndarray:
    """Inputs of `spec` for tracing and checking: images in [0, 1), or token ids right-padded with 0."""
    rng = np.random.default_rng(seed)
    shape = [batch] + [d if d > 0 else 12 for d in spec["shape"][1:]]
    if spec["datatype"].startswith("FP"):
        return rng.random(shape, dtype=np.float32)
    ids = rng.integers(1, max(2, vocabulary or 2), size=shape, dtype=np.int64)
    lengths = rng.integers(1, shape[-1] + 1, size=batch)
    ids[np.arange(shape[-1])[None, :] >= lengths[:, None]] = 0
    return ids


def _vocabulary_size(model) -> int | None:
    from ember.layers import Embedding, PositionalEmbedding
    for layer in model.modules():
        if isinstance(layer, (Embedding, PositionalEmbedding)):
            return int(layer.input_dim)
    return None


_EXPORTING = threading.Lock()  # stderr and logger levels are process-wide: one export at a time


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx's exporter logs missing torchvision ops, and torch.export prints the traced graph to stderr
    when it fails; the one-line ExportError says what failed."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration",
                                                    "torch.fx.experimental.symbolic_shapes")]
    with _EXPORTING:
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                # torch.export and the ONNX translator warn about their own internals (pytree, nn.LSTM's
                # flat weights, non-leaf .grad): nothing the user can act on
                warnings.simplefilter("ignore")
                yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _exception_summary(error: Exception) -> str:
    """The line under torch.onnx's "## Exception summary" heading (the cause), else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1]
    return lines[0] if lines else type(error).__name__


def _onnx_bytes(model, sample: torch.Tensor, spec: dict, opset: int) -> bytes:
    free = {axis: torch.export.Dim.AUTO for axis, d in enumerate(spec["shape"]) if d == -1}
    try:
        with _quiet_exporter(), layers_in_order():
            program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=(free,))
    except Exception as e:  # torch.export names the construct it could not trace
        raise ExportError(f"cannot export {type(model).__name__} {getattr(model, 'name', '')!r} to ONNX: "
                          f"{_exception_summary(e)}") from e
    import onnx
    proto = program.model_proto
    for axis, value in enumerate(spec["shape"]):  # readable axis names in the file: batch, steps
        if value == -1:
            dim = proto.graph.input[0].type.tensor_type.shape.dim[axis]
            dim.dim_param = "batch" if axis == 0 else f"axis{axis}"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def session(path_or_bytes, threads: int | None = None):
    """An ONNX Runtime CPU session, with `threads` intra-op threads (default: torch's thread count)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only: a normal run prints no warnings
    source = path_or_bytes if isinstance(path_or_bytes, bytes) else os.fspath(path_or_bytes)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def max_difference(model, onnx_model: bytes, inputs: np.ndarray) -> float:
    """Largest absolute difference between the model's and ONNX Runtime's outputs on `inputs`."""
    expected = model.predict(inputs, batch_size=len(inputs), verbose=0)
    actual = session(onnx_model).run(None, {INPUT: inputs})[0]
    if actual.shape != expected.shape:
        raise ExportError(f"the ONNX graph returns shape {actual.shape}, the model {expected.shape}")
    return float(np.abs(actual - expected).max(initial=0.0))


def sidecar(model, spec: dict, output_shape, source: str | None) -> dict:
    """The JSON written beside the graph: what serving needs that the graph does not hold."""
    return {"format": "ember-onnx", "ember_version": ember.__version__, "source": source,
            "name": getattr(model, "name", None), "inputs": [spec],
            "outputs": [{"name": OUTPUT, "shape": [-1, *output_shape], "datatype": "FP32"}],
            "metadata": model.metadata}


def sidecar_path(onnx_path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def export_onnx(model, path, *, opset: int = DEFAULT_OPSET, atol: float = 1e-4, check_batch: int = 8,
                source: str | None = None) -> dict:
    """Write `model` to `path` as ONNX (batch axis dynamic) plus `<stem>.json`, after checking ONNX Runtime
    against the model on `check_batch` sample inputs (a batch size other than the traced one).
    Returns {"path", "sidecar", "max_abs_diff", "opset", "size_bytes"}; nothing is written if the check fails.

    >>> export_onnx(models.load_model("model.ember"), "model.onnx")
    """
    if opset < 17:
        raise ExportError(f"opset {opset} is too old: ember exports opset 17 or newer")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the output file must end in .onnx")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such folder")
    spec = input_spec(model, free_length=False)
    vocabulary = _vocabulary_size(model)
    model.eval()
    traced = torch.as_tensor(sample_inputs(spec, 2, vocabulary=vocabulary, seed=1))
    data = _onnx_bytes(model, traced, spec, opset)
    checked = sample_inputs(spec, check_batch, vocabulary=vocabulary, seed=2)
    difference = max_difference(model, data, checked)
    if not difference <= atol:
        raise ExportError(f"the ONNX graph differs from the model by {difference:.3g} (more than {atol:g}) "
                          "on sample inputs; not written")
    output_shape = list(model.predict(checked[:1], verbose=0).shape[1:])
    meta = sidecar(model, spec, output_shape, source)
    write_atomically(str(path), lambda f: f.write(data))
    write_atomically(str(sidecar_path(path)), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    return {"path": str(path), "sidecar": str(sidecar_path(path)), "max_abs_diff": difference, "opset": opset,
            "size_bytes": len(data)}


def open_graph(path, threads: int | None = None) -> tuple:
    """(ONNX Runtime session, sidecar dict or {} when there is none) of an `.onnx` file; a file either cannot
    be read is one ModelFileError naming it."""
    from ember.errors import ModelFileError
    path = Path(path)
    try:
        graph = session(path, threads)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelFileError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0]})") from None
    side = sidecar_path(path)
    if not side.is_file():
        return graph, {}
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{side}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != "ember-onnx":
        raise ModelFileError(f"{side}: not an ember ONNX sidecar (no \"format\": \"ember-onnx\")")
    return graph, meta


class OnnxModel:
    """An exported (or int8) graph with its sidecar, standing in for the model in `ember evaluate` and
    `ember predict`: `predict` (NumPy in and out, in batches) and `metadata`."""

    def __init__(self, path, threads: int | None = None):
        from ember.errors import ModelFileError
        path = Path(path)
        if not sidecar_path(path).is_file():
            raise ModelFileError(f"{path}: no {sidecar_path(path).name} beside it (ember export writes one): "
                                 "without it the task, class names and preprocessing are unknown")
        self._session, meta = open_graph(path, threads)
        self.metadata = meta.get("metadata") or {}
        self.name = meta.get("name") or path.stem
        self._input = self._session.get_inputs()[0].name

    def predict(self, x, batch_size: int = 256, verbose=0) -> np.ndarray:
        x = np.asarray(x)
        return np.concatenate([self._session.run(None, {self._input: x[i:i + batch_size]})[0]
                               for i in range(0, len(x), batch_size)])
