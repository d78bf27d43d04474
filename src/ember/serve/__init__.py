"""Serving: `ember serve MODEL` runs a model file or an exported ONNX graph behind an HTTP server.

`predictor` loads the model and turns requests into inputs, `batching` groups concurrent requests into
batches, `app` is the FastAPI app (KServe v2 REST, /predict, /metrics, the demo page at /).
"""


def serve(model_path, *, host: str = "127.0.0.1", port: int = 8000, name: str | None = None,
          max_batch_size: int = 64, max_delay_ms: float = 5.0, max_queue: int = 256,
          max_body_bytes: int | None = None, threads: int | None = None, quiet: bool = False) -> None:
    """Serve `model_path` until interrupted (Ctrl-C or SIGTERM stop it cleanly)."""
    import uvicorn

    from ember.serve.app import DEFAULT_MAX_BODY_BYTES, bind, create_app
    from ember.serve.predictor import load_predictor

    predictor = load_predictor(model_path, name=name, threads=threads)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"

    def announce():
        if not quiet:
            batching = "no batching" if max_batch_size == 1 else \
                f"batches of up to {max_batch_size} within {max_delay_ms:g} ms"
            print(f"serving {predictor.name!r} ({predictor.task or 'arrays'}, {predictor.platform}) at {url}\n"
                  f"  demo page {url}/   API docs {url}/docs   metrics {url}/metrics\n"
                  f"  POST {url}/v2/models/{predictor.name}/infer   POST {url}/predict   ({batching})\n"
                  "  Ctrl-C stops it", flush=True)

    app = create_app(predictor, max_batch_size=max_batch_size, max_delay_ms=max_delay_ms, max_queue=max_queue,
                     max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes, on_ready=announce)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=30)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
