"""The HTTP server, on FastAPI: KServe v2 REST, `/predict` for raw inputs, Prometheus `/metrics`, a demo page.

Every request that reaches the model goes through one `MicroBatcher`. Errors are JSON, `{"error": "..."}`,
with a 4xx status for anything the client can fix (400 bad input, 404 unknown model, 413 body too large,
415 unsupported content type) and 503 with Retry-After when the queue is full.
"""
import asyncio
import contextlib
import gc
import json
import logging
import socket
import time
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException

import ember
from ember.serve.batching import MicroBatcher, QueueFull, ShuttingDown
from ember.serve.predictor import InputError, Predictor
from ember.serve.protocol import HTTPError, infer_input, infer_response, json_body, json_response, predict_input

DEFAULT_MAX_BODY_BYTES = 8 * 2**20
_MAX_DRAIN_BYTES = 32 * 2**20  # an oversized body is read and dropped up to this, so the client sees the 413
_METHODS = {"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
# python-multipart logs each parse error; the client gets it as a 400 and the server log stays quiet
logging.getLogger("python_multipart").setLevel(logging.ERROR)
log = logging.getLogger("ember.serve")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _Metrics:
    """Prometheus metrics in a registry of the app's own (two apps in one process don't collide)."""

    def __init__(self, batcher_waiting):
        self.registry = CollectorRegistry()
        self.requests = Counter("ember_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("ember_request_duration_seconds", "Time from request to response, by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("ember_batch_size", "Rows per model batch", buckets=_BATCH_BUCKETS,
                                    registry=self.registry)
        self.inference = Histogram("ember_inference_duration_seconds", "Time per model batch",
                                   buckets=_LATENCY_BUCKETS, registry=self.registry)
        Gauge("ember_queue_depth", "Requests waiting for the model", registry=self.registry).set_function(
            batcher_waiting)

    def batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.inference.observe(seconds)


class _Guard:
    """ASGI middleware: refuses bodies over `max_body_bytes` (413, also when streamed without a length),
    records every request's route, status and latency, and serves `fast` routes itself.

    `fast` maps (method, path) to (route label, `async handler(body) -> Response`): the inference route
    runs there, outside FastAPI's middleware and dependency machinery, which cost more event-loop time per
    request than the whole of parsing, checking and answering an infer request (FastAPI still documents
    the route and answers it when reached another way)."""

    def __init__(self, app, max_body_bytes: int, metrics: _Metrics, fast: dict | None = None):
        self.app, self.max_body_bytes, self.metrics, self.fast = app, max_body_bytes, metrics, fast or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        limit = self.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        too_large = f"the request body is larger than the limit of {limit:,} bytes"
        fast = self.fast.get((scope.get("method"), scope.get("path")))
        label = fast[0] if fast else None
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain(receive, {"type": "http.request", "more_body": True})
            status[0] = 413
            await _error(413, too_large, {"Connection": "close"})(scope, receive, send)
            self._record(scope, status[0], start, label)
            return
        received = [0]

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > limit:
                    await _drain(receive, message)
                    raise HTTPException(413, too_large)
            return message

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if fast is None:
                await self.app(scope, counting_receive, recording_send)
                return
            try:
                response = await fast[1](await _read_body(counting_receive))
            except Exception as e:
                response = error_response(e)
            await response(scope, receive, recording_send)
        finally:
            self._record(scope, status[0], start, label)

    def _record(self, scope, status: int, start: float, route: str | None = None) -> None:
        route = route or getattr(scope.get("route"), "path", "unmatched")
        method = scope.get("method", "")
        self.metrics.requests.labels(route, method if method in _METHODS else "other", str(status)).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "the client went away before sending the whole body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def error_response(e: Exception) -> JSONResponse:
    """The JSON error for an exception raised while answering a request."""
    if isinstance(e, HTTPError):
        return _error(e.status, e.message, e.headers)
    if isinstance(e, InputError):
        return _error(400, str(e))
    if isinstance(e, QueueFull):
        return _error(503, f"the server is busy ({e}); retry shortly", {"Retry-After": "1"})
    if isinstance(e, HTTPException):
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))
    log.error("internal error", exc_info=e)
    return _error(500, f"internal error: {type(e).__name__}")


async def _drain(receive, message) -> None:
    """Read and drop the rest of a request body (clients that send it all before reading the response would
    otherwise see the connection reset instead of the error)."""
    dropped = 0
    while message.get("more_body") and message["type"] == "http.request" and dropped < _MAX_DRAIN_BYTES:
        message = await receive()
        dropped += len(message.get("body", b""))


def _demo_page(name: str) -> str:
    page = resources.files("ember.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    return page.replace("{{MODEL_NAME_JSON}}", json.dumps(name).replace("<", "\\u003c"))


# -- the app ------------------------------------------------------------------------------------
class Service:
    """What the routes call: the predictor behind one MicroBatcher, its readiness and its metrics."""

    def __init__(self, predictor: Predictor, *, max_batch_size: int = 64, max_delay_ms: float = 5.0,
                 max_queue: int = 256):
        self.predictor, self.ready = predictor, False
        self.batcher = MicroBatcher(predictor.run, predictor.collate, max_batch_size=max_batch_size,
                                    max_delay_ms=max_delay_ms, max_queue=max_queue,
                                    on_batch=lambda rows, seconds: self.metrics.batch(rows, seconds))
        self.metrics = _Metrics(lambda: self.batcher.waiting)

    async def start(self) -> None:
        self.batcher.start()
        await asyncio.get_running_loop().run_in_executor(None, self.predictor.warm_up)
        # the model, torch and the app are long-lived: keep them out of the garbage collector's scans, which
        # otherwise stall every in-flight request for ~90 ms now and then (seen with the SST-2 BiLSTM)
        gc.collect()
        gc.freeze()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.batcher.stop()

    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.predictor.name:
            raise HTTPError(404, f"unknown model {name!r}; this server serves {self.predictor.name!r}")
        if version not in (None, "1"):
            raise HTTPError(404, f"model {name!r} has no version {version!r}; it has version '1'")

    def readiness(self, body: dict) -> JSONResponse:
        return JSONResponse({**body, "ready": self.ready}, status_code=200 if self.ready else 400)

    async def run(self, array: np.ndarray) -> np.ndarray:
        try:
            return await self.batcher.submit(array)
        except QueueFull:
            raise
        except ShuttingDown as e:
            raise HTTPError(503, str(e), {"Retry-After": "1"}) from None
        except Exception as e:  # the model itself failed on this input (alone: see MicroBatcher)
            first = str(e).splitlines()[0] if str(e) else ""
            log.warning("inference failed on an input of shape %s: %s: %s", list(array.shape), type(e).__name__, first)
            raise HTTPError(500, f"inference failed: {type(e).__name__}: {first}") from None

    async def infer(self, body: bytes) -> Response:
        """A KServe v2 inference request's body in, its response out."""
        payload = json_body(body)
        outputs = await self.run(await infer_input(payload, self.predictor))
        return infer_response(self.predictor, payload, outputs)

    async def predict(self, request: Request, top_k: int) -> Response:
        """`/predict`: the top-k classes of each input."""
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        probabilities = await self.run(await predict_input(request, self.predictor))
        if probabilities.ndim != 2:
            raise HTTPError(400, f"model {self.predictor.name!r} does not output class probabilities: use "
                                 f"/v2/models/{self.predictor.name}/infer")
        return json_response({"model_name": self.predictor.name,
                              "predictions": self.predictor.top_k(probabilities, top_k)})


def _add_error_handlers(app: FastAPI) -> None:
    for kind in (HTTPError, InputError, QueueFull, HTTPException):
        app.add_exception_handler(kind, lambda request, e: error_response(e))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _unexpected(request, e: Exception):  # a bug: JSON still, and the traceback in the server log
        return _error(500, f"internal error: {type(e).__name__}")


def _request_examples(predictor: Predictor) -> tuple[dict, dict]:
    """OpenAPI request bodies of the infer and predict routes (they read the raw body themselves)."""
    shape = [1, *(d if d > 0 else 8 for d in predictor.input["shape"][1:])]
    infer = {"requestBody": {"required": True, "content": {"application/json": {"example": {
        "id": "1", "inputs": [{"name": predictor.input["name"], "datatype": predictor.input["datatype"],
                               "shape": shape, "data": "<values, flat or nested>"}]}}}}}
    predict = {"requestBody": {"required": True, "content": {
        "application/json": {"examples": {"text": {"value": {"text": "a gripping, funny film"}},
                                          "instances": {"value": {"instances": [[0.0]]}}}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}}}}}
    return infer, predict


def _add_routes(app: FastAPI, service: Service) -> None:
    page = _demo_page(service.predictor.name)
    infer_body, predict_body = _request_examples(service.predictor)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo():
        return HTMLResponse(page)

    @app.get("/v2", summary="Server metadata (KServe v2)")
    async def server_metadata():
        return {"name": "ember", "version": ember.__version__, "extensions": []}

    @app.get("/v2/health/live", summary="Liveness (KServe v2)")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="Readiness (KServe v2)")
    async def ready():
        return service.readiness({})

    @app.get("/v2/models/{name}", summary="Model metadata (KServe v2)")
    @app.get("/v2/models/{name}/versions/{version}", summary="Model metadata (KServe v2)")
    async def model_metadata(name: str, version: str | None = None):
        service.check_model(name, version)
        return service.predictor.describe()

    @app.get("/v2/models/{name}/ready", summary="Model readiness (KServe v2)")
    @app.get("/v2/models/{name}/versions/{version}/ready", summary="Model readiness (KServe v2)")
    async def model_ready(name: str, version: str | None = None):
        service.check_model(name, version)
        return service.readiness({"name": name})

    @app.post("/v2/models/{name}/infer", summary="Inference (KServe v2)", openapi_extra=infer_body)
    @app.post("/v2/models/{name}/versions/{version}/infer", summary="Inference (KServe v2)",
              openapi_extra=infer_body)
    async def infer(name: str, request: Request, version: str | None = None):
        service.check_model(name, version)
        return await service.infer(await request.body())

    @app.post("/predict", summary="Top-k classes of raw inputs: an image upload, text, or arrays",
              openapi_extra=predict_body)
    async def predict(request: Request, top_k: int = 3):
        return await service.predict(request, top_k)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(predictor: Predictor, *, max_batch_size: int = 64, max_delay_ms: float = 5.0, max_queue: int = 256,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, on_ready=None):
    """The ASGI app serving `predictor` (see the module docstring); `on_ready()` runs once it is ready."""
    service = Service(predictor, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        if on_ready is not None:
            on_ready()
        yield
        await service.stop()

    app = FastAPI(title=f"ember: {predictor.name}", version=ember.__version__, lifespan=lifespan,
                  description=f"Model {predictor.name!r} ({predictor.task or 'arrays'}, {predictor.platform}). "
                              "KServe v2 REST under /v2, raw inputs at /predict, Prometheus at /metrics.")
    _add_error_handlers(app)
    _add_routes(app, service)
    fast = {("POST", f"/v2/models/{predictor.name}/infer"): ("/v2/models/{name}/infer", service.infer)}
    return _Guard(app, max_body_bytes, service.metrics, fast)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), so the caller knows the port before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    return sock
