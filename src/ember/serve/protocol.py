"""Request bodies to model inputs, and model outputs to response bodies: KServe v2 inference requests
and `/predict`'s raw inputs (an image upload, text, base64 images, nested lists)."""
import asyncio
import base64
import binascii
import math

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from ember.export.onnx import datatype as datatype_of
from ember.serve.predictor import InputError, Predictor


class HTTPError(Exception):
    """An error with its HTTP status (and headers), answered as JSON."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def json_response(data: dict) -> Response:
    """A JSON response, serialized by orjson (NumPy arrays included) without FastAPI's per-value encoder."""
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def json_body(body: bytes):
    """The parsed JSON of a request body; malformed JSON is an InputError (400)."""
    if not body:
        raise InputError("the request body is empty: send JSON")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:  # also invalid UTF-8, and nesting deeper than 1024
        raise InputError(f"malformed JSON: {e}") from None


def _numbers(data, datatype: str, what: str) -> np.ndarray:
    """JSON numbers as an array (the predictor checks ranges and casts); strings, booleans, mixed or ragged
    lists are refused."""
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError):
        raise InputError(f"{what}: nested lists of different lengths, or integers too large") from None
    floating = datatype.startswith("FP")
    if array.dtype.kind not in ("fiu" if floating else "iu"):
        kind = "numbers" if floating else "integers"
        raise InputError(f"{what}: datatype {datatype} needs {kind}, got {_describe(array)}")
    return array


def _describe(array: np.ndarray) -> str:
    return {"U": "strings", "f": "fractions", "O": "mixed values", "b": "booleans"}.get(array.dtype.kind,
                                                                                       str(array.dtype))


_INLINE_BYTES = 64 * 1024  # smaller inputs are preprocessed on the event loop: a thread hop costs more


async def _preprocess(size: int, function, *args):
    """`function(*args)` (tokenizing, decoding an image): inline for small inputs, on a worker thread for
    large ones, so one big upload does not stall every other request."""
    if size <= _INLINE_BYTES:
        return function(*args)
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def _text_size(texts) -> int:
    return sum(len(t) for t in texts if isinstance(t, str)) if isinstance(texts, list) else 0


async def infer_input(payload, predictor: Predictor) -> np.ndarray:
    """The input array of a KServe v2 infer request, checked against the model."""
    spec = predictor.input
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputError('the body must be a JSON object with "inputs" (KServe v2 inference request)')
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError(f'"inputs" must be a list of one tensor object (the model\'s input {spec["name"]!r})')
    tensor = inputs[0]
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
    if missing:
        raise InputError(f"inputs[0]: missing {', '.join(map(repr, missing))}")
    if tensor["name"] != spec["name"]:
        raise InputError(f"inputs[0].name: unknown input {tensor['name']!r}; the model's input is {spec['name']!r}")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise InputError(f"inputs[0].shape: must be a list of non-negative integers, got {shape!r}")
    datatype = tensor["datatype"]
    if datatype == "BYTES" and predictor.kind == "text":
        texts = tensor["data"] if isinstance(tensor["data"], list) else [tensor["data"]]
        if len(shape) != 1 or shape[0] != len(texts):
            raise InputError(f"inputs[0].shape: {shape} does not match {len(texts)} texts (use [{len(texts)}])")
        return await _preprocess(_text_size(texts), predictor.from_texts, texts, "inputs[0].data")
    if datatype != spec["datatype"]:
        raise InputError(f"inputs[0].datatype: {datatype!r}, but the model takes {spec['datatype']!r}"
                         + (' (or "BYTES" for raw text)' if predictor.kind == "text" else ""))
    array = _numbers(tensor["data"], datatype, "inputs[0].data")
    count = math.prod(shape)
    if array.size != count:
        raise InputError(f"inputs[0].data: {array.size} values, but shape {shape} holds {count}")
    return predictor.check(array.reshape(shape), "inputs[0]")


async def predict_input(request: Request, predictor: Predictor) -> np.ndarray:
    """The input array of a `/predict` request: an uploaded image (multipart), or JSON with "text"/"texts",
    "instances" (samples as nested lists) or "image" (base64, a data URL works)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _upload(request, predictor)
    if content_type not in ("application/json", ""):
        raise HTTPError(415, f"unsupported content type {content_type!r}: send application/json or a "
                             "multipart/form-data image upload")
    payload = json_body(await request.body())
    if not isinstance(payload, dict):
        raise InputError('the body must be a JSON object with "text", "texts", "instances" or "image"')
    if "text" in payload or "texts" in payload:
        key = "text" if "text" in payload else "texts"
        texts = [payload[key]] if key == "text" else payload[key]
        texts = texts if isinstance(texts, list) else [None]
        return await _preprocess(_text_size(texts), predictor.from_texts, texts, key)
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise InputError('"instances" must be a non-empty list of samples')
        return predictor.check(_numbers(instances, predictor.input["datatype"], "instances"), "instances")
    if "image" in payload:
        if not isinstance(payload["image"], str):
            raise InputError('"image" must be a base64 string')
        encoded = payload["image"].split(",", 1)[-1]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InputError('"image": not valid base64') from None
        return await _preprocess(len(data), predictor.from_image, data, '"image"')
    raise InputError(f'the body needs one of "text", "texts", "instances", "image"; got keys {sorted(payload)}')


async def _upload(request: Request, predictor: Predictor) -> np.ndarray:
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException:
        raise
    except Exception as e:  # python-multipart's parse errors
        raise InputError(f"malformed multipart body: {e}") from None
    try:
        uploads = [v for v in form.values() if hasattr(v, "read")]
        if not uploads:
            raise InputError('the multipart body has no file: send the image as the "file" field')
        upload = form.get("file") if hasattr(form.get("file"), "read") else uploads[0]
        data = await upload.read()
    finally:
        await form.close()
    if not data:
        raise InputError(f"upload {upload.filename!r} is empty")
    return await _preprocess(len(data), predictor.from_image, data, f"upload {upload.filename!r}")


def infer_response(predictor: Predictor, payload: dict, outputs: np.ndarray) -> Response:
    """A KServe v2 inference response for `outputs`, echoing the request's "id"."""
    response = {"model_name": predictor.name, "model_version": "1",
                "outputs": [{"name": predictor.output["name"], "datatype": datatype_of(outputs.dtype),
                             "shape": list(outputs.shape), "data": np.ascontiguousarray(outputs.reshape(-1))}]}
    if isinstance(payload.get("id"), str):
        response["id"] = payload["id"]
    return json_response(response)
