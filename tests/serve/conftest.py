"""Small trained models and real `ember serve` processes on 127.0.0.1 for the export and serving tests."""
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import numpy as np
import pytest

import ember
from ember import datasets, layers, models


def _digits():
    (x, y), _ = datasets.digits.load_data()
    return (x[..., None] / 16.0).astype(np.float32), y


@pytest.fixture(scope="session")
def image_model_file(tmp_path_factory):
    """A small CNN trained on the 8x8 digits, saved with image-classification metadata."""
    ember.set_random_seed(0)  # session fixtures run before the per-test seed
    x, y = _digits()
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu"),
                               layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    model.metadata = {"task": "image_classification", "class_names": [str(d) for d in range(10)],
                      "preprocessing": {"image_size": [8, 8], "color_mode": "grayscale"}}
    path = tmp_path_factory.mktemp("image") / "digits.ember"
    model.save(path)
    return path


SENTENCES = ["a gripping and funny film", "dull , lifeless and far too long", "a warm , moving story",
             "the worst script of the year", "beautifully acted and smart", "boring and predictable"] * 20
LABELS = [1, 0, 1, 0, 1, 0] * 20


@pytest.fixture(scope="session")
def text_model_file(tmp_path_factory):
    """A BiLSTM sentiment classifier on a few sentences, saved with text-classification metadata."""
    from ember.models.text import bilstm_classifier
    ember.set_random_seed(0)
    vectorizer = layers.TextVectorization(max_tokens=100, output_sequence_length=12)
    vectorizer.adapt(SENTENCES)
    ids = vectorizer.encode(SENTENCES)
    model = bilstm_classifier(vocabulary_size=vectorizer.vocabulary_size(), embedding_dim=16, units=8,
                              pooling="max")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ids, np.array(LABELS), epochs=4, batch_size=16, verbose=0)
    model.metadata = {"task": "text_classification", "class_names": ["negative", "positive"],
                      "preprocessing": {"vectorizer": {"class_name": "TextVectorization",
                                                       "config": vectorizer.get_config()}}}
    path = tmp_path_factory.mktemp("text") / "sentiment.ember"
    model.save(path)
    return path


class Server:
    """`ember serve MODEL --port 0 ...` in a subprocess; `call` sends one request."""

    def __init__(self, model, *options):
        command = [sys.executable, "-m", "ember.cli", "serve", str(model), "--port", "0", *map(str, options)]
        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe nobody reads: the server never blocks
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.banner = self.process.stdout.readline()
        found = re.search(r"at (http://[\d.]+:\d+)", self.banner)
        if not found:
            self.process.kill()
            raise AssertionError(f"ember serve did not start: {self.banner}{self.stop()}")
        self.url = found.group(1)

    def call(self, method, path, body=None, headers=None):
        """(status, headers, parsed JSON or text) of one request."""
        if isinstance(body, (dict, list)):
            body, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, head, data = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            status, head, data = e.code, dict(e.headers), e.read()
        is_json = head.get("content-type", "").startswith("application/json")
        return status, head, json.loads(data) if is_json else data.decode()

    def stop(self) -> str:
        """Stop the server; what it wrote on stderr."""
        self.process.terminate()
        self.process.communicate(timeout=30)
        self.log.seek(0)
        errors = self.log.read()
        self.log.close()
        return errors


@pytest.fixture(scope="module")
def image_server(image_model_file):
    server = Server(image_model_file, "--max-batch-size", 16, "--max-delay-ms", 20)
    yield server
    errors = server.stop()
    assert "Traceback" not in errors, errors


def multipart(data: bytes, filename="digit.png", field="file", content_type="image/png"):
    """(body, headers) of a multipart/form-data upload of one file."""
    boundary = "emberboundary7d1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def infer_body(x, name="input", datatype="FP32"):
    return {"id": "req-1", "inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype,
                                       "data": np.asarray(x).reshape(-1).tolist()}]}
