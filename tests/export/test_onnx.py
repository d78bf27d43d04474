"""ONNX export: ONNX Runtime gives the model's outputs (any batch size), and what it cannot do is said."""
import json
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from ember import layers, models
from ember.export import ExportError, export_onnx
from ember.export.onnx import sample_inputs


def classic_cnn():
    model = models.Sequential([
        layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])
    model.metadata = {"task": "image_classification", "class_names": [str(d) for d in range(10)]}
    return model


def ort_outputs(path, x):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_classic_cnn_matches_onnx_runtime_at_any_batch_size(tmp_path):
    model = classic_cnn()
    result = export_onnx(model, tmp_path / "cnn.onnx")
    assert result["max_abs_diff"] <= 1e-4 and result["opset"] >= 17
    for batch in (1, 33):
        x = np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)
        np.testing.assert_allclose(ort_outputs(tmp_path / "cnn.onnx", x), model.predict(x, verbose=0), atol=1e-4)
    side = json.loads((tmp_path / "cnn.json").read_text())
    assert side["format"] == "ember-onnx" and side["metadata"]["class_names"][3] == "3"
    import onnx
    ops = [node.op_type for node in onnx.load(str(tmp_path / "cnn.onnx")).graph.node]
    # the layers' own order (Conv, Relu, MaxPool), not the pool-first order fit runs: ONNX Runtime fuses Conv+Relu
    assert [op for op in ops if op in ("Conv", "Relu", "MaxPool")][:3] == ["Conv", "Relu", "MaxPool"]
    assert side["inputs"] == [{"name": "input", "shape": [-1, 28, 28, 1], "datatype": "FP32"}]


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_masked_bilstm_matches_onnx_runtime_on_padded_batches(tmp_path, pooling):
    from ember.models.text import bilstm_classifier
    model = bilstm_classifier(vocabulary_size=50, embedding_dim=8, units=6, pooling=pooling)
    ids = sample_inputs({"shape": [-1, 15], "datatype": "INT64"}, 4, vocabulary=50)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(ids, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    export_onnx(model, tmp_path / "lstm.onnx")
    padded = sample_inputs({"shape": [-1, 15], "datatype": "INT64"}, 9, vocabulary=50, seed=7)
    assert (padded == 0).any()
    np.testing.assert_allclose(ort_outputs(tmp_path / "lstm.onnx", padded), model.predict(padded, verbose=0),
                               atol=1e-5)
    side = json.loads((tmp_path / "lstm.json").read_text())
    assert side["inputs"][0]["shape"] == [-1, 15] and side["inputs"][0]["datatype"] == "INT64"


def test_transformer_classifier_exports(tmp_path):
    from ember.models.text import transformer_classifier
    model = transformer_classifier(vocabulary_size=40, embedding_dim=16, num_heads=2, intermediate_dim=32)
    model.build((None, 10))
    model.input_dtype = torch.int64
    assert export_onnx(model, tmp_path / "t.onnx")["max_abs_diff"] <= 1e-4


def test_what_cannot_be_exported_is_refused_without_writing(tmp_path):
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_onnx(classic_cnn(), tmp_path / "model.bin")
    with pytest.raises(ExportError, match="no such folder"):
        export_onnx(classic_cnn(), tmp_path / "missing" / "m.onnx")
    with pytest.raises(ExportError, match="opset 12 is too old"):
        export_onnx(classic_cnn(), tmp_path / "m.onnx", opset=12)
    unbuilt = models.Sequential([layers.Dense(3)])
    with pytest.raises(ExportError, match="no known input shape"):
        export_onnx(unbuilt, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_and_reports(tmp_path):
    model = classic_cnn()
    model.save(tmp_path / "cnn.ember")
    out = tmp_path / "cnn.onnx"
    result = subprocess.run([sys.executable, "-m", "ember.cli", "export", str(tmp_path / "cnn.ember"), "--out",
                             str(out), "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["max_abs_diff"] <= 1e-4 and out.is_file()
    assert result.stderr == ""  # quiet: the exporter's own chatter is not shown
    bad = subprocess.run([sys.executable, "-m", "ember.cli", "export", str(tmp_path / "cnn.ember"), "--out",
                          str(tmp_path / "nowhere" / "x.onnx")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such folder" in bad.stderr


@pytest.mark.slow  # trains on MNIST and SST-2
@pytest.mark.data
def test_parity_on_real_test_sets(ember_data, tmp_path):
    """The classic CNN on all 10,000 MNIST test images and the SST-2 BiLSTM (its shipped config's
    architecture) on the 872 dev sentences, each trained briefly: ONNX Runtime within 1e-4 everywhere."""
    from ember import datasets
    from ember.models.text import bilstm_classifier
    from ember.tasks.text_classification import load_data
    (x, y), (x_test, _) = datasets.mnist.load_data()
    cnn = classic_cnn()
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    cnn.fit((x[:5000, ..., None] / 255).astype(np.float32), y[:5000], epochs=1, verbose=0)
    export_onnx(cnn, tmp_path / "cnn.onnx")
    images = (x_test[..., None] / 255).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(tmp_path / "cnn.onnx", images), cnn.predict(images, verbose=0), atol=1e-4)

    texts = load_data(dataset="sst2", sequence_length=56)
    lstm = bilstm_classifier(vocabulary_size=texts.vectorizer.vocabulary_size(), pooling="max", input_dropout=0.3)
    lstm.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    lstm.fit(texts.x_train[:4000], texts.y_train[:4000], epochs=1, batch_size=64, verbose=0)
    export_onnx(lstm, tmp_path / "lstm.onnx")
    np.testing.assert_allclose(ort_outputs(tmp_path / "lstm.onnx", texts.x_test), lstm.predict(texts.x_test, verbose=0),
                               atol=1e-4)
