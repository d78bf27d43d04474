"""Compression: structured pruning, int8 through ONNX Runtime, and `ember compress` on the shipped digits."""
import json

import numpy as np
import pytest
import torch

from ember import layers, models
from ember.compress import QuantizationError, quantize
from ember.compress.prune import prune, sparsify
from ember.compress import report as compress_report
from ember.compress.report import flops
from ember.export.onnx import session
from tests.conftest import run_cli

pytest.importorskip("onnxruntime")


def small_cnn(batch_norm=False):
    torch.manual_seed(0)
    model = models.Sequential([layers.Input((12, 12, 1)), layers.Conv2D(8, 3, activation="relu"),
                               *([layers.BatchNormalization()] if batch_norm else []),
                               layers.MaxPooling2D(2), layers.Conv2D(8, 3, activation="relu"), layers.Flatten(),
                               layers.Dense(6, activation="relu"), layers.Dropout(0.1),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def images(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 12, 12, 1), dtype=np.float32)


def bands(n=256, seed=0):
    """Noise with a bright band in the top, middle or bottom third: the class."""
    x, y = images(n, seed) * 0.3, np.arange(n) % 3
    for k in range(3):
        x[y == k, 4 * k:4 * k + 4] += 0.7
    return x, y


def test_pruning_removes_the_weakest_filters_and_units_and_keeps_what_they_did_not_touch():
    model = small_cnn()
    with torch.no_grad():  # filters and units that can only output zero: pruning them changes nothing
        for layer in (model.layers[0], model.layers[2]):
            layer.conv.weight[::2] = 0
            layer.conv.bias[::2] = -1  # relu(-1) = 0
        model.layers[4].linear.weight[:3] = 0
        model.layers[4].linear.bias[:3] = -1
    pruned = prune(model, 0.5)
    shapes = [tuple(layer.output_shape) for layer in pruned.layers]
    assert shapes == [(None, 10, 10, 4), (None, 5, 5, 4), (None, 3, 3, 4), (None, 36), (None, 3), (None, 3),
                      (None, 3)]
    x = images()
    assert np.allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert pruned.count_params() < model.count_params() / 2 and flops(pruned) < flops(model) / 2


def test_pruning_slices_batch_normalization_and_the_result_trains_and_saves(tmp_path):
    model = small_cnn(batch_norm=True)
    model.fit(images(), np.arange(64) % 3, epochs=1, verbose=0)
    pruned = prune(model, 0.25)
    assert pruned.layers[1].moving_mean.shape == (6,)
    pruned.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    pruned.fit(images(), np.arange(64) % 3, epochs=1, verbose=0)
    pruned.save(tmp_path / "p.ember")
    assert np.allclose(models.load_model(tmp_path / "p.ember").predict(images(), verbose=0),
                       pruned.predict(images(), verbose=0), atol=1e-6)


def test_pruning_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
        prune(small_cnn(), 1.0)


def test_sparsify_zeroes_the_smallest_weights():
    model = small_cnn()
    assert sparsify(model, 0.6) == pytest.approx(0.6, abs=0.01)
    assert (model.layers[0].conv.weight == 0).any()


def test_static_int8_for_a_conv_net_is_smaller_agrees_and_serves(tmp_path):
    model = small_cnn()
    x, y = bands()
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.9
    result = quantize(model, tmp_path / "m.int8.onnx", calibration=x[:128])
    assert result["method"] == "static" and result["agreement"] >= 0.95
    meta = json.loads((tmp_path / "m.int8.json").read_text())
    assert meta["quantization"]["per_channel"] and meta["quantization"]["float_nodes"]
    outputs = session(tmp_path / "m.int8.onnx").run(None, {"input": x[:8]})[0]
    assert outputs.shape == (8, 3) and np.allclose(outputs.sum(1), 1, atol=1e-5)  # softmax stayed in float
    import onnx
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath, options.log_severity_level = str(tmp_path / "optimized.onnx"), 3
    onnxruntime.InferenceSession(str(tmp_path / "m.int8.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    # ONNX Runtime ran the convolutions (ReLU folded in) and the pooling between them in integers
    assert ops.count("QLinearConv") == 2 and "MaxPool" not in ops and "Relu" not in ops, ops
    from ember.serve.predictor import load_predictor
    predictor = load_predictor(tmp_path / "m.int8.onnx")
    assert predictor.run(x[:2]).shape == (2, 3)


def test_dynamic_int8_for_a_dense_net_and_bad_requests(tmp_path):
    torch.manual_seed(0)
    model = models.Sequential([layers.Input((144,)), layers.Dense(256, activation="relu"),
                               layers.Dense(256, activation="relu"), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = bands()
    model.fit(x.reshape(len(x), -1), y, epochs=10, batch_size=16, verbose=0)
    result = quantize(model, tmp_path / "d.onnx", calibration=x.reshape(len(x), -1))
    assert result["method"] == "dynamic" and result["agreement"] >= 0.95
    assert result["size_bytes"] < 4 * model.count_params() / 3  # int8 weights: about a byte each
    with pytest.raises(QuantizationError, match="calibration"):
        quantize(small_cnn(), tmp_path / "c.onnx", method="static")
    with pytest.raises(QuantizationError, match="must end in .onnx"):
        quantize(model, tmp_path / "d.int8")
    assert not (tmp_path / "c.onnx").exists()


def test_distillation_trains_the_student_from_a_frozen_teacher():
    from ember.compress import distill
    teacher = small_cnn()
    x, y = bands()
    teacher.fit(x, y, epochs=30, batch_size=16, verbose=0)
    before = [p.detach().clone() for p in teacher.parameters()]
    torch.manual_seed(1)
    student = models.Sequential([layers.Input((12, 12, 1)), layers.Conv2D(4, 3, activation="relu"),
                                 layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    distill(teacher, student, x, y, epochs=30, batch_size=16, verbose=0)
    assert student.evaluate(x, y, verbose=0)[1] > 0.9 and student.count_params() < teacher.count_params() / 2
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))  # the teacher only scores
    with pytest.raises(ValueError, match="alpha"):
        distill(teacher, student, x, y, alpha=2)


def test_distillation_keeps_the_students_regularization():
    from ember.compress.distill import Distiller
    x, y = bands()
    student = models.Sequential([layers.Input((12, 12, 1)), layers.Flatten(),
                                 layers.Dense(3, activation="softmax", kernel_regularizer="l2",
                                              activity_regularizer="l1")])
    distiller = Distiller(small_cnn(), student)
    distiller.compile("adam")
    xs, labels = (torch.from_numpy(x[:8]),), torch.from_numpy(y[:8])
    plain, _ = distiller.loss_and_predictions(xs, labels, None)
    total, _ = distiller.compute_loss_and_predictions(xs, labels, None)
    activity = 0.01 * student(xs[0]).abs().sum() / 8  # Keras: l1 of the output over the batch size
    expected = plain + sum(student.losses) + activity
    assert total.item() == pytest.approx(expected.item(), rel=1e-5) and total > plain


def ember(*args):
    return run_cli(*args)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    pytest.importorskip("sklearn")
    folder = tmp_path_factory.mktemp("digits")
    (folder / "digits.yaml").write_text("""\
task: image_classification
data: {dataset: digits, image_size: [12, 12], validation_split: 0.0}
model:
  layers:
    - {Conv2D: {filters: 16, kernel_size: 3, activation: relu}}
    - {MaxPooling2D: {pool_size: 2}}
    - {Conv2D: {filters: 32, kernel_size: 3, activation: relu}}
    - Flatten
    - {Dense: {units: 32, activation: relu}}
    - {Dense: {units: 10}}
train: {epochs: 10, batch_size: 32, optimizer: adam, seed: 0}
output: {plots: false, report: false}
""")
    result = ember("train", folder / "digits.yaml", "--out", folder / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    return folder / "run" / "model.ember"


def test_compress_writes_every_variant_and_a_report_scripts_can_read(digits_model, tmp_path):
    student = tmp_path / "student.yaml"
    student.write_text((digits_model.parent / "config.yaml").read_text().replace("filters: 32", "filters: 8")
                       .replace("epochs: 10", "epochs: 6"))
    result = ember("compress", digits_model, "--data", "digits", "--quantize", "int8", "--prune", "0.5",
                   "--finetune-epochs", "3", "--distill-student", student, "--out", tmp_path / "c", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    rows = {row["name"]: row for row in report["variants"]}
    assert list(rows) == ["fp32", "int8", "pruned", "pruned+int8", "student"], report["skipped"]
    assert report["calibration"]["part"] == "training" and 0 < report["calibration"]["samples"] <= 512
    assert rows["student"]["params"] < rows["fp32"]["params"]
    for row in rows.values():
        assert set(row) == {"name", "path", "size_bytes", "params", "flops", "latency_ms_p50", "latency_ms_p95",
                            "throughput_per_s", "metrics"}
        assert (tmp_path / "c" / row["path"]).is_file() and row["metrics"]["test_accuracy"] > 0.5
    assert rows["int8"]["size_bytes"] < rows["fp32"]["size_bytes"] / 2
    assert rows["pruned"]["flops"] < rows["fp32"]["flops"] / 2 and rows["pruned"]["params"] < rows["fp32"]["params"]
    assert "| pruned+int8 |" in (tmp_path / "c" / "report.md").read_text()
    assert models.load_model(tmp_path / "c" / "pruned.ember").metadata["task"] == "image_classification"
    evaluated = ember("evaluate", tmp_path / "c" / "pruned+int8.onnx", "--data", "digits", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["test_accuracy"] == pytest.approx(
        rows["pruned+int8"]["metrics"]["test_accuracy"], abs=1e-9)
    from PIL import Image
    Image.fromarray(np.full((8, 8), 128, dtype=np.uint8)).save(tmp_path / "digit.png")
    predicted = ember("predict", tmp_path / "c" / "int8.onnx", tmp_path / "digit.png", "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)[0]["predictions"]) == 3


@pytest.mark.parametrize("args, message", [
    (["--prune", "1.5"], "--prune 1.5"),
    ([], "nothing to do"),
    (["--quantize", "int8", "--data", "fashion"], "not a dataset name"),
])
def test_compress_refuses_bad_requests_and_leaves_nothing(digits_model, tmp_path, args, message):
    data = [] if "--data" in args else ["--data", "digits"]
    result = ember("compress", digits_model, *data, *args, "--out", tmp_path / "c")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_report_says_when_int8_was_calibrated_on_test_inputs():
    row = {"name": "fp32", "size_bytes": 10, "params": 1, "flops": 1, "latency_ms_p50": 1.0, "latency_ms_p95": 1.0,
           "throughput_per_s": 1.0, "metrics": {"test_accuracy": 0.9}}
    report = {"source": "m.ember", "threads": 1, "test_samples": 100, "variants": [row], "skipped": []}
    assert "calibrated" not in compress_report.markdown({**report, "calibration": {"part": "training", "samples": 64}})
    assert "calibrated on 64 of the test inputs" in compress_report.markdown(
        {**report, "calibration": {"part": "test", "samples": 64}})
