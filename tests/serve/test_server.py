"""`ember serve` on 127.0.0.1: KServe v2 REST, /predict, /metrics, errors, batching, ONNX and text models."""
import base64
import http.client
import io
import re
import threading

import numpy as np
import pytest
from PIL import Image

from ember import datasets, models
from tests.serve.conftest import Server, _digits, infer_body, multipart


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def test_health_metadata_and_unknown_model(image_server):
    assert image_server.call("GET", "/v2/health/live")[:3:2] == (200, {"live": True})
    assert image_server.call("GET", "/v2/health/ready")[:3:2] == (200, {"ready": True})
    assert image_server.call("GET", "/v2")[2]["name"] == "ember"
    status, _, meta = image_server.call("GET", "/v2/models/digits")
    assert status == 200
    assert meta["inputs"] == [{"name": "input", "shape": [-1, 8, 8, 1], "datatype": "FP32"}]
    assert meta["outputs"][0]["shape"] == [-1, 10]
    assert meta["parameters"]["input_kind"] == "image" and meta["parameters"]["image_size"] == [8, 8]
    status, _, body = image_server.call("GET", "/v2/models/other")
    assert status == 404 and "unknown model 'other'" in body["error"]
    status, _, body = image_server.call("GET", "/no/such/page")
    assert status == 404 and "error" in body
    assert "/v2/models/{name}/infer" in image_server.call("GET", "/openapi.json")[2]["paths"]


def test_infer_matches_the_model(image_server, image_model_file):
    x, _ = _digits()
    status, _, body = image_server.call("POST", "/v2/models/digits/infer", infer_body(x[:5]))
    assert status == 200, body
    output = body["outputs"][0]
    assert body["id"] == "req-1" and output["shape"] == [5, 10] and output["datatype"] == "FP32"
    expected = models.load_model(image_model_file).predict(x[:5], verbose=0)
    np.testing.assert_allclose(np.array(output["data"]).reshape(5, 10), expected, atol=1e-5)
    nested = {"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": x[:1].tolist()}]}
    status, _, body = image_server.call("POST", "/v2/models/digits/infer", nested)
    np.testing.assert_allclose(body["outputs"][0]["data"], expected[0], atol=1e-5)


def test_predict_takes_uploads_base64_and_instances(image_server):
    _, (x_test, y_test) = datasets.digits.load_data()
    image = (x_test[0] * 16).clip(0, 255).astype(np.uint8)
    status, _, upload = image_server.call("POST", "/predict?top_k=3", *multipart(png(image)))
    assert status == 200, upload
    top = upload["predictions"][0]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
    encoded = "data:image/png;base64," + base64.b64encode(png(image)).decode()
    status, _, by_json = image_server.call("POST", "/predict?top_k=3", {"image": encoded})
    assert status == 200 and by_json["predictions"] == upload["predictions"]
    status, _, by_array = image_server.call("POST", "/predict", {"instances": (x_test[:2, ..., None] / 16).tolist()})
    assert status == 200 and len(by_array["predictions"]) == 2
    assert by_array["predictions"][0][0]["label"] == str(y_test[0])


BAD = {
    "malformed JSON": ("POST", "/v2/models/digits/infer", b'{"inputs": [', {"Content-Type": "application/json"},
                       400, "malformed JSON"),
    "wrong shape": ("POST", "/v2/models/digits/infer", infer_body(np.zeros((2, 7, 8, 1))), None, 400,
                    "does not fit the model's [N, 8, 8, 1]"),
    "wrong rank": ("POST", "/v2/models/digits/infer", infer_body(np.zeros((2, 64))), None, 400, "has rank 2"),
    "wrong datatype": ("POST", "/v2/models/digits/infer", infer_body(np.zeros((1, 8, 8, 1)), datatype="INT64"),
                       None, 400, "'INT64', but the model takes 'FP32'"),
    "strings as data": ("POST", "/v2/models/digits/infer", {"inputs": [{"name": "input", "shape": [1], "datatype":
                        "FP32", "data": ["a"]}]}, None, 400, "needs numbers, got strings"),
    "too few values": ("POST", "/v2/models/digits/infer", {"inputs": [{"name": "input", "shape": [1, 8, 8, 1],
                       "datatype": "FP32", "data": [0.5] * 10}]}, None, 400, "10 values, but shape"),
    "unknown input": ("POST", "/v2/models/digits/infer", infer_body(np.zeros((1, 8, 8, 1)), name="x"), None, 400,
                      "unknown input 'x'"),
    "no inputs": ("POST", "/v2/models/digits/infer", {"data": []}, None, 400, '"inputs"'),
    "NaN literal": ("POST", "/predict", b'{"instances": [[[[NaN]]]]}', {"Content-Type": "application/json"}, 400,
                    "malformed JSON"),
    "too large for FP32": ("POST", "/v2/models/digits/infer", infer_body(np.full((1, 8, 8, 1), 1e39)), None, 400,
                           "NaN or infinite"),
    "booleans": ("POST", "/v2/models/digits/infer", {"inputs": [{"name": "input", "shape": [1, 8, 8, 1],
                 "datatype": "FP32", "data": [True] * 64}]}, None, 400, "got booleans"),
    "shape product overflows": ("POST", "/v2/models/digits/infer", {"inputs": [{"name": "input", "shape":
                                [2**32, 2**32], "datatype": "FP32", "data": []}]}, None, 400, "0 values, but shape"),
    "too many rows": ("POST", "/predict", {"instances": np.zeros((1025, 8, 8, 1)).tolist()}, None, 400,
                      "at most 1024 per request"),
    "unknown version": ("POST", "/v2/models/digits/versions/2/infer", infer_body(np.zeros((1, 8, 8, 1))), None,
                        404, "no version '2'"),
    "20 MB body": ("POST", "/v2/models/digits/infer", b"[" + b"0," * (10 * 2**20) + b"0]",
                   {"Content-Type": "application/json"}, 413, "larger than the limit"),
    "non-image upload": ("POST", "/predict", *multipart(b"%PDF-1.4 not an image", "notes.pdf"), 400,
                         "upload 'notes.pdf': not a readable image"),
    "empty upload": ("POST", "/predict", *multipart(b"", "empty.png"), 400, "is empty"),
    "broken multipart": ("POST", "/predict", b"garbage", {"Content-Type": "multipart/form-data; boundary=x"}, 400,
                         ""),
    "text to an image model": ("POST", "/predict", {"text": "hello"}, None, 400, "takes images, not text"),
    "unsupported content type": ("POST", "/predict", b"hello", {"Content-Type": "text/plain"}, 415,
                                 "unsupported content type"),
    "bad top_k": ("POST", "/predict?top_k=zero", {"instances": [[[[0.0]]]]}, None, 400, "top_k"),
    "GET on infer": ("GET", "/v2/models/digits/infer", None, None, 405, ""),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(image_server, case):
    method, path, body, headers, status, message = BAD[case]
    got, head, answer = image_server.call(method, path, body, headers)
    assert got == status, answer
    assert head["content-type"].startswith("application/json") and message in answer["error"]
    assert "\n" not in answer["error"]
    x, _ = _digits()
    assert image_server.call("POST", "/v2/models/digits/infer", infer_body(x[:1]))[0] == 200


def _batch_counts(server) -> tuple[float, float]:
    metrics = server.call("GET", "/metrics")[2]
    batches = float(re.search(r"^ember_batch_size_count (\S+)", metrics, re.M).group(1))
    rows = float(re.search(r"^ember_batch_size_sum (\S+)", metrics, re.M).group(1))
    return batches, rows


def test_concurrent_requests_are_batched_and_counted(image_server):
    x, _ = _digits()
    statuses = []
    batches_before, rows_before = _batch_counts(image_server)

    def client(i):
        for j in range(4):
            statuses.append(image_server.call("POST", "/v2/models/digits/infer", infer_body(x[i + j:i + j + 1]))[0])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 64
    batches, rows = _batch_counts(image_server)
    assert rows - rows_before == 64
    assert batches - batches_before < 64  # requests that arrived together ran together
    metrics = image_server.call("GET", "/metrics")[2]
    assert re.search(r'ember_requests_total\{method="POST",route="/v2/models/\{name\}/infer",status="200"\} \d+',
                     metrics)
    assert "ember_request_duration_seconds_bucket" in metrics and "ember_queue_depth" in metrics


def test_demo_page_names_the_model(image_server):
    status, head, page = image_server.call("GET", "/")
    assert status == 200 and head["content-type"].startswith("text/html")
    assert 'const MODEL = "digits";' in page and "<canvas" in page


def test_text_model_serves_raw_text_and_its_onnx_export_agrees(text_model_file, tmp_path):
    from ember.export import export_onnx
    onnx_path = tmp_path / "sentiment.onnx"
    export_onnx(models.load_model(text_model_file), onnx_path)
    answers = {}
    for path in (text_model_file, onnx_path):
        server = Server(path, "--name", "sentiment")
        try:
            status, _, body = server.call("POST", "/predict?top_k=2", {"texts": ["a funny , moving film",
                                                                                "dull and boring"]})
            assert status == 200, body
            bytes_body = {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["dull and boring"]}]}
            status, _, infer = server.call("POST", "/v2/models/sentiment/infer", bytes_body)
            assert status == 200 and infer["outputs"][0]["shape"] == [1, 2]
            assert server.call("POST", "/predict", {"text": 3})[0] == 400
            answers[path.suffix] = body["predictions"]
        finally:
            assert "Traceback" not in server.stop()
    assert [p[0]["label"] for p in answers[".ember"]] == ["positive", "negative"]
    for ember_top, onnx_top in zip(answers[".ember"], answers[".onnx"]):
        assert ember_top[0]["label"] == onnx_top[0]["label"]
        assert abs(ember_top[0]["probability"] - onnx_top[0]["probability"]) < 1e-4


def test_a_chunked_body_over_the_limit_gets_413(image_model_file):
    server = Server(image_model_file, "--max-body-mb", 1)
    try:
        connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=60)
        chunks = (b"0," * 50_000 for _ in range(20))  # 2 MB, no Content-Length
        connection.request("POST", "/v2/models/digits/infer", body=chunks, encode_chunked=True,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 413 and b"larger than the limit" in response.read()
        connection.close()
        x, _ = _digits()
        assert server.call("POST", "/v2/models/digits/infer", infer_body(x[:1]))[0] == 200
    finally:
        assert "Traceback" not in server.stop()


def test_versioned_routes_and_text_input_checks(text_model_file):
    server = Server(text_model_file)
    try:
        assert server.call("GET", "/v2/models/sentiment/versions/1")[2]["name"] == "sentiment"
        assert server.call("GET", "/v2/models/sentiment/versions/1/ready")[0] == 200
        gap = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "INT64", "data": [0, 5, 7]}]}
        status, _, body = server.call("POST", "/v2/models/sentiment/versions/1/infer", gap)
        assert status == 400 and "padded with 0 at the end only" in body["error"]
        out_of_range = {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "INT64", "data": [5, 10**6]}]}
        assert "token ids must lie in" in server.call("POST", "/v2/models/sentiment/infer", out_of_range)[2]["error"]
        wrapped = {"inputs": [{"name": "input", "shape": [1, 1], "datatype": "INT64", "data": [2**64]}]}
        assert server.call("POST", "/v2/models/sentiment/infer", wrapped)[0] == 400
        good = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "INT64", "data": [4, 5, 0, 6, 0, 0]}]}
        status, _, body = server.call("POST", "/v2/models/sentiment/infer", good)
        assert status == 200 and body["outputs"][0]["shape"] == [2, 2]
    finally:
        assert "Traceback" not in server.stop()
