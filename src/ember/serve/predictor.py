"""The model behind the server: a `.ember` file (run by torch) or an exported `.onnx` (run by ONNX Runtime).

A `Predictor` knows its input's name, shape and datatype (KServe v2 names), checks request arrays against
them, turns raw requests into model inputs as training did (image bytes through the model's image size and
color mode, text through its vectorizer), runs batches and names the top classes.
"""
import re
from pathlib import Path

import numpy as np
import torch

from ember.errors import EmberError, ModelFileError

NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}
KINDS = {"image_classification": "image", "text_classification": "text"}
MAX_ROWS = 1024             # samples in one request
MAX_IMAGE_PIXELS = 40_000_000  # an upload that decodes to more is refused before it is decoded


class InputError(EmberError, ValueError):
    """A request the model cannot take: the message says which field and why (HTTP 400)."""


class Predictor:
    """`run(batch) -> probabilities` plus what the server needs to check, preprocess and describe requests."""

    def __init__(self, run, input_spec: dict, output_spec: dict, metadata: dict, *, name: str, platform: str,
                 trims_padding: bool = False, max_length: int | None = None):
        self._run = run
        self.max_length = max_length  # most token ids per text where the input length is free
        self.input, self.output, self.metadata = input_spec, output_spec, metadata or {}
        self.name, self.platform = name, platform
        self.task = self.metadata.get("task")
        self.kind = KINDS.get(self.task, "array")
        self.class_names = self.metadata.get("class_names")
        self.trims_padding = trims_padding
        self._vectorizer = None
        if self.kind == "text":
            from ember.tasks.text_classification import vectorizer_from_metadata
            self._vectorizer = vectorizer_from_metadata(self.metadata)

    # -- description ------------------------------------------------------------------------------
    def describe(self) -> dict:
        """KServe v2 model metadata, with the task and what the demo page needs under "parameters"."""
        parameters = {"task": self.task, "input_kind": self.kind, "class_names": self.class_names}
        if self.kind == "image":
            parameters.update(self.metadata.get("preprocessing") or {})
        return {"name": self.name, "versions": ["1"], "platform": self.platform,
                "inputs": [self.input], "outputs": [self.output], "parameters": parameters}

    # -- requests to arrays -----------------------------------------------------------------------
    def check(self, array: np.ndarray, what: str = "input") -> np.ndarray:
        """`array` as the model's dtype, refused unless its shape fits the input (batch axis first) and its
        values are ones the model can take."""
        expected = self.input["shape"]
        if array.ndim != len(expected):
            raise InputError(f"{what}: shape {list(array.shape)} has rank {array.ndim}, the model takes "
                             f"{_shape_text(expected)}")
        if any(e != -1 and a != e for a, e in zip(array.shape[1:], expected[1:])) or 0 in array.shape[1:]:
            raise InputError(f"{what}: shape {list(array.shape)} does not fit the model's {_shape_text(expected)}")
        _check_rows(len(array), what)
        target = NUMPY[self.input["datatype"]]
        if np.issubdtype(target, np.floating):
            array = array.astype(target, copy=False)
            if not np.isfinite(array).all():
                raise InputError(f"{what}: holds NaN or infinite values (or numbers too large for "
                                 f"{self.input['datatype']})")
            return array
        limits = np.iinfo(target)
        if array.min() < limits.min or array.max() > limits.max:
            raise InputError(f"{what}: values must lie in {limits.min}..{limits.max} for {self.input['datatype']}")
        array = array.astype(target, copy=False)
        if self.kind == "text":
            self._check_token_ids(array, what)
        return array

    def _check_token_ids(self, ids: np.ndarray, what: str) -> None:
        vocabulary = self._vocabulary_size()
        if ids.min() < 0 or ids.max() >= vocabulary:
            raise InputError(f"{what}: token ids must lie in 0..{vocabulary - 1}")
        if ids.ndim == 2 and self.max_length and ids.shape[1] > self.max_length:
            raise InputError(f"{what}: at most {self.max_length} token ids per text, got {ids.shape[1]}")
        real = ids != 0
        if ids.ndim == 2 and (real[:, 1:] & ~real[:, :-1]).any():
            raise InputError(f"{what}: each row must be token ids padded with 0 at the end only")

    def from_texts(self, texts: list, what: str = "text") -> np.ndarray:
        if self.kind != "text":
            raise InputError(f"{what}: model {self.name!r} takes {self.kind}s, not text")
        if not texts or not all(isinstance(t, str) for t in texts):
            raise InputError(f"{what}: must be a string or a non-empty list of strings")
        _check_rows(len(texts), what)
        ids = self._vectorizer.encode(texts)
        return ids[:, :self.max_length] if self.max_length else ids

    def from_image(self, data: bytes, what: str = "upload") -> np.ndarray:
        """One encoded image (PNG, JPEG, ...) as a batch of one, preprocessed as in training."""
        if self.kind != "image":
            raise InputError(f"{what}: model {self.name!r} takes {self.kind}s, not images")
        from ember.data.images import decode_image, to_model_input
        from ember.errors import DatasetError
        prep = self.metadata.get("preprocessing") or {}
        try:
            image = decode_image(data, prep.get("color_mode", "rgb"), prep.get("image_size"), name=what,
                                 max_pixels=MAX_IMAGE_PIXELS)
        except DatasetError as e:
            raise InputError(str(e)) from None
        return to_model_input(image[None])

    def _vocabulary_size(self) -> int:
        return int(self._vectorizer.vocabulary_size())

    # -- running --------------------------------------------------------------------------------
    def collate(self, arrays: list[np.ndarray]) -> np.ndarray:
        """One batch from several requests' arrays. Token ids of a model that ignores padding are
        right-padded to the longest and their shared trailing padding is cut; otherwise arrays of unequal
        shapes fail the batch, and the batcher runs each request alone."""
        if self.trims_padding:
            longest = max(a.shape[1] for a in arrays)
            arrays = [np.pad(a, ((0, 0), (0, longest - a.shape[1]))) if a.shape[1] < longest else a for a in arrays]
        batch = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if self.trims_padding:
            used = int((batch != 0).any(axis=0).nonzero()[0].max(initial=0)) + 1
            batch = batch[:, :used]
        return batch

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch)

    def top_k(self, probabilities: np.ndarray, k: int) -> list[list[dict]]:
        names = self.class_names or [str(i) for i in range(probabilities.shape[1])]
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[{"label": names[j], "probability": float(probabilities[i, j])} for j in row]
                for i, row in enumerate(order)]

    def warm_up(self) -> None:
        """One inference, so the first request does not pay for lazy initialization."""
        shape = [1] + [d if d > 0 else 8 for d in self.input["shape"][1:]]
        self.run(np.ones(shape, dtype=NUMPY[self.input["datatype"]]))


def _check_rows(rows: int, what: str) -> None:
    if rows == 0:
        raise InputError(f"{what}: the batch is empty")
    if rows > MAX_ROWS:
        raise InputError(f"{what}: {rows} samples in one request; send at most {MAX_ROWS} per request")


def _shape_text(shape) -> str:
    return "[" + ", ".join("N" if i == 0 else ("any" if d == -1 else str(d)) for i, d in enumerate(shape)) + "]"


# -- loading ------------------------------------------------------------------------------------
def load_predictor(path, *, name: str | None = None, threads: int | None = None) -> Predictor:
    """A `.ember` model file or an `.onnx` graph (with its `<stem>.json` sidecar when there is one)."""
    path = Path(path)
    if not path.is_file():
        raise EmberError(f"{path}: no such model file")
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "model"  # it goes into URLs
    if path.suffix == ".onnx":
        return _onnx_predictor(path, name, threads)
    return _ember_predictor(path, name, threads)


def _ember_predictor(path: Path, name: str, threads: int | None) -> Predictor:
    from ember import models
    from ember.export.onnx import input_spec
    if threads:
        torch.set_num_threads(threads)
    model = models.load_model(path, compile=False)
    if not hasattr(model, "input_shape"):
        raise EmberError(f"{path}: a {type(model).__name__} cannot be served (it does not map one input array "
                         "to class probabilities); serve image, text or array classifiers")
    model.eval()
    spec = input_spec(model)
    device = model.device

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    classes = len(model.metadata.get("class_names") or []) or -1
    output = {"name": "output", "shape": [-1, classes] if classes > 0 else [-1], "datatype": "FP32"}
    free = spec["shape"][-1] == -1
    predictor = Predictor(run, spec, output, model.metadata, name=name, platform="ember_pytorch",
                          trims_padding=free and model.ignores_padding_length(),
                          max_length=int(model.input_shape[-1]) if free else None)
    if classes < 0:
        predictor.output["shape"] = [-1, *predictor.run(_zeros(spec)).shape[1:]]
    return predictor


def _zeros(spec) -> np.ndarray:
    return np.zeros([1] + [d if d > 0 else 8 for d in spec["shape"][1:]], dtype=NUMPY[spec["datatype"]])


def _onnx_predictor(path: Path, name: str, threads: int | None) -> Predictor:
    from ember.export.onnx import open_graph, sidecar_path
    sess, meta = open_graph(path, threads)
    side = sidecar_path(path)
    graph_in, graph_out = sess.get_inputs(), sess.get_outputs()
    if len(graph_in) != 1 or len(graph_out) < 1:
        raise EmberError(f"{path}: ember serves graphs with one input, this one has {len(graph_in)}")
    graph_spec = _spec_of(graph_in[0])
    spec = (meta.get("inputs") or [None])[0] or graph_spec
    if not isinstance(spec, dict) or spec.get("datatype") != graph_spec["datatype"] or \
            not isinstance(spec.get("shape"), list) or len(spec["shape"]) != len(graph_spec["shape"]):
        raise ModelFileError(f"{side}: its input {spec!r} does not match the graph's {graph_spec}")
    output = (meta.get("outputs") or [None])[0] or _spec_of(graph_out[0])
    input_name = graph_in[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return sess.run(None, {input_name: batch})[0]

    metadata = meta.get("metadata") or {}
    return Predictor(run, {**spec, "name": input_name}, output, metadata, name=name, platform="onnxruntime_onnx")


_ORT_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
              "tensor(uint8)": "UINT8"}


def _spec_of(node) -> dict:
    if node.type not in _ORT_TYPES:
        raise EmberError(f"ONNX input {node.name!r} has type {node.type}, which ember does not serve")
    shape = [d if isinstance(d, int) and d > 0 else -1 for d in node.shape]
    return {"name": node.name, "shape": shape, "datatype": _ORT_TYPES[node.type]}

