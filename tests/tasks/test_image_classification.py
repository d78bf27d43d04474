"""The image_classification task end to end through the CLI: folders of PNGs, .npz arrays, bad input."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from ember import models
from ember.tasks import config as config_lib
from ember.tasks import image_classification as ic
from ember.tasks import runner
from tests.conftest import run_cli

CLASSES = ("bars", "columns", "dots")


def ember(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def pattern(kind: str, rng, size=16) -> np.ndarray:
    """An RGB image of horizontal bars, vertical columns or scattered dots, with noise and a random colour."""
    image = rng.integers(0, 60, (size, size, 3))
    colour = rng.integers(150, 256, 3)
    offset = rng.integers(0, 4)
    if kind == "bars":
        image[offset::4] = colour
    elif kind == "columns":
        image[:, offset::4] = colour
    else:
        ys, xs = rng.integers(0, size, (2, size * 2))
        image[ys, xs] = colour
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (root / kind).mkdir()
        for i in range(40):
            suffix = ".png" if i % 4 else ".jpg"
            image = Image.fromarray(pattern(kind, rng, size=16 if i % 5 else 20))  # mixed sizes: resized
            image.save(root / kind / f"{i:03d}{suffix}", quality=95)
    return root


def folder_config(tmp_path, folder, **extra):
    text = f"""\
task: image_classification
data:
  folder: {folder}
  image_size: [16, 16]
  color_mode: rgb
  validation_split: 0.2
  test_split: 0.25
model:
  layers:
    - Conv2D: {{filters: 8, kernel_size: 3, activation: relu}}
    - MaxPooling2D
    - Flatten
    - Dense: {{units: 3}}
train:
  epochs: 12
  lr: 0.005
  batch_size: 16
  seed: 0
output:
  worst_examples: 8
"""
    path = tmp_path / "folder.yaml"
    path.write_text(text)
    return path


def test_image_folder_trains_evaluates_and_predicts_end_to_end(tmp_path, image_folder):
    config = folder_config(tmp_path, image_folder)
    result = ember("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "metrics.json", "model.ember", "report.md",
                 "checkpoints/last.ember", "checkpoints/best.ember", "plots/learning_curves.png",
                 "plots/confusion_matrix.png", "plots/highest_loss.png"):
        assert (run / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.partial")]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13)) and {"loss", "val_accuracy", "lr"} <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 30 and set(metrics["per_class"]) == set(CLASSES)
    assert metrics["test_accuracy"] >= 0.9, metrics  # the three patterns are easy to tell apart
    report = (run / "report.md").read_text()
    assert "plots/confusion_matrix.png" in report and "| test_accuracy |" in report and "## Per class" in report

    # the saved model carries its classes and preprocessing; evaluate reproduces metrics.json
    model = models.load_model(run / "model.ember")
    assert model.metadata["class_names"] == list(CLASSES)
    assert model.metadata["preprocessing"] == {"image_size": [16, 16], "color_mode": "rgb"}
    evaluated = ember("evaluate", str(run), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert runner.compare(json.loads(evaluated.stdout), run / "metrics.json") <= 1e-6
    on_folder = ember("evaluate", str(run / "model.ember"), "--data", str(image_folder), "--json")
    assert on_folder.returncode == 0 and json.loads(on_folder.stdout)["test_samples"] == 120

    # predict on new files, one of a different size
    rng = np.random.default_rng(1)
    inputs = []
    for kind in CLASSES:
        path = tmp_path / f"new_{kind}.png"
        Image.fromarray(pattern(kind, rng, size=24)).save(path)
        inputs.append(str(path))
    predicted = ember("predict", str(run / "model.ember"), *inputs, "--json", "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr
    results = json.loads(predicted.stdout)
    assert [r["input"] for r in results] == inputs and all(len(r["predictions"]) == 2 for r in results)
    assert [r["predictions"][0]["label"] for r in results] == list(CLASSES)
    assert all(0 <= p["probability"] <= 1 for r in results for p in r["predictions"])
    plain = ember("predict", str(run / "model.ember"), inputs[0])
    assert plain.stdout.startswith(f"{inputs[0]}: bars ")


def test_run_directory_is_never_overwritten_silently(tmp_path, image_folder):
    config = folder_config(tmp_path, image_folder)
    run = tmp_path / "run"
    assert ember("train", str(config), "--out", str(run), "--set", "train.epochs=1", "--quiet").returncode == 0
    (run / "notes.txt").write_text("mine")
    refused = ember("train", str(config), "--out", str(run), "--set", "train.epochs=1")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and (run / "notes.txt").exists()
    replaced = ember("train", str(config), "--out", str(run), "--set", "train.epochs=1", "--overwrite", "--quiet")
    assert replaced.returncode == 0 and replaced.stdout == ""
    assert not (run / "notes.txt").exists() and (run / "model.ember").is_file()


def test_overwrite_never_deletes_what_is_not_a_run(tmp_path, image_folder):
    config = folder_config(tmp_path, image_folder)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    for out, cwd in ((str(mine), None), (".", str(tmp_path)), (str(image_folder), None)):
        result = ember("train", str(config), "--out", out, "--overwrite", "--set", "train.epochs=1", cwd=cwd)
        assert result.returncode == 2 and "not an ember run directory" in result.stderr, result.stderr
    assert (mine / "keep.txt").read_text() == "precious" and (tmp_path / "folder.yaml").exists()
    assert sorted(p.name for p in image_folder.iterdir()) == sorted(CLASSES)


@pytest.mark.parametrize("edit, message", [
    (("epochs: 12", "epoch: 12"), "unknown key 'train.epoch' (did you mean 'epochs'?)"),
    (("epochs: 12", "epochs: six"), "train.epochs: input should be a valid integer (got 'six')"),
    (("folder: ", "folder: /no/such/place/"), "data.folder: no such folder"),
    ((re.compile(r"model:.*?train:", re.S), "model:\n  name: resnet_smal\ntrain:"),
     "unknown model 'resnet_smal' (did you mean 'resnet_small'?)"),
    (("task: image_classification", "task: image_classify"), "unknown task 'image_classify'"),
    (("  seed: 0", "  seed: [0"), "YAML syntax error at line"),
    (("Conv2D: {filters", "Conv2D: {filter"), "Conv2D has no argument 'filter' (did you mean 'filters'?)"),
    (("MaxPooling2D", "MaxPool2d"), "unknown layer 'MaxPool2d' (did you mean 'MaxPool2D'?)"),
    (("units: 3", "units: 4"), "outputs shape (None, 4), but the data has 3 classes"),
    (("image_size: [16, 16]", "image_size: [3, 3]"), "cannot take images of shape (3, 3, 3)"),
])
def test_bad_configs_exit_2_with_one_line_and_leave_nothing(tmp_path, image_folder, edit, message):
    config = folder_config(tmp_path, image_folder)
    old, new = edit
    text = config.read_text()
    config.write_text(old.sub(new, text) if isinstance(old, re.Pattern) else text.replace(old, new))
    result = ember("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


def test_a_failure_after_training_starts_leaves_no_run_directory(tmp_path, image_folder, monkeypatch):
    config = config_lib.load_config(folder_config(tmp_path, image_folder), ["train.epochs=1"])

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ic.TASK, "evaluate", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        runner.train(config=config, out=tmp_path / "run", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


def test_npz_data_with_and_without_a_test_part(tmp_path):
    rng = np.random.default_rng(0)
    x = np.stack([pattern(CLASSES[i % 3], rng, 16) for i in range(90)])
    y = np.arange(90) % 3
    np.savez(tmp_path / "split.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:],
             class_names=np.array(CLASSES))
    np.savez(tmp_path / "whole.npz", x_train=x, y_train=y)
    images = ic.load_data(npz=str(tmp_path / "split.npz"), color_mode="grayscale")
    assert images.x_train.shape == (60, 16, 16, 1) and images.x_test.shape == (30, 16, 16, 1)
    assert images.class_names == list(CLASSES) and images.x_train.dtype == np.float32
    assert 0 <= images.x_train.min() and images.x_train.max() <= 1
    whole = ic.load_data(npz=str(tmp_path / "whole.npz"), test_split=0.2, subset=10)
    assert whole.x_train.shape == (10, 16, 16, 3) and len(whole.y_test) == 18 and whole.class_names == ["0", "1", "2"]


def test_npz_never_unpickles(tmp_path):
    np.savez(tmp_path / "objects.npz", x_train=np.array([{"a": 1}], dtype=object), y_train=np.array([0]))
    with pytest.raises(Exception, match="objects.npz: not a readable .npz of plain arrays"):
        ic.load_data(npz=str(tmp_path / "objects.npz"))


def test_unreadable_image_is_named(tmp_path, image_folder):
    import shutil
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    (folder / "dots" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match="broken.png: not a readable image"):
        ic.load_data(folder=str(folder), image_size=[16, 16])


def test_layer_list_gets_a_softmax_and_registered_models_build():
    model = ic.build_model((8, 8, 1), 4, layers=["Flatten", {"Dense": {"units": 4}}])
    assert model.output_activation() == "softmax" and model.output_shape == (None, 4)
    resnet = ic.build_model((16, 16, 3), 5, name="resnet_small", args={"widths": [8, 16]})
    assert resnet.output_shape == (None, 5) and resnet.output_activation() == "softmax"


def test_to_model_input_converts_colour_and_size():
    gray = np.full((2, 8, 8), 255, np.uint8)
    out = ic.to_model_input(gray, image_size=[4, 6], color_mode="rgb")
    assert out.shape == (2, 4, 6, 3) and np.allclose(out, 1.0)
    rgb = np.zeros((1, 5, 5, 3), np.uint8)
    rgb[..., 1] = 255
    assert np.allclose(ic.to_model_input(rgb, color_mode="grayscale"), 0.587, atol=1e-6)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    from ember.data.images import read_image
    dark = np.full((4, 4), 10000, dtype=np.uint16)  # 15% grey in 16 bits
    Image.fromarray(dark).save(tmp_path / "dark.png")
    assert abs(int(read_image(tmp_path / "dark.png", "grayscale")[0, 0, 0]) - 39) <= 1


@pytest.mark.parametrize("x, message", [
    (np.full((4, 8, 8), 200.0), re.escape("float pixels must lie in [0, 1]")),
    (np.full((4, 8, 8), np.nan), "NaN"),
])
def test_npz_pixels_outside_the_unit_range_are_refused(tmp_path, x, message):
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(4) % 2)
    with pytest.raises(Exception, match=message):
        ic.load_data(npz=str(tmp_path / "bad.npz"))


def test_fractional_labels_are_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.array([0, 0.5, 1, 1]))
    with pytest.raises(Exception, match="whole class indices"):
        ic.load_data(npz=str(tmp_path / "bad.npz"))


def test_the_test_split_does_not_move_with_the_training_seed(tmp_path):
    x = np.arange(50 * 4, dtype=np.uint8).reshape(50, 2, 2)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(50) % 2)
    first = ic.load_data(npz=str(tmp_path / "d.npz"))
    config = config_lib.config_from_dict({"task": "image_classification", "data": {"npz": str(tmp_path / "d.npz")},
                                          "train": {"seed": 7}})
    again = ic.TASK.load_data(config)
    np.testing.assert_array_equal(first.x_test, again.x_test)


@pytest.mark.parametrize("edit, message", [
    ("callbacks:\n  early_stopping: {monitor: val_acc}\n",
     "'val_acc' is not a logged metric (did you mean 'val_accuracy'?)"),
    ("callbacks:\n  reduce_lr_on_plateau: {patience: 1}\n", "use one of them"),
])
def test_callback_mistakes_are_caught_before_training(tmp_path, image_folder, edit, message):
    config = folder_config(tmp_path, image_folder)
    text = config.read_text()
    if "reduce_lr" in edit:
        text = text.replace("  seed: 0", "  seed: 0\n  schedule: cosine")
    config.write_text(text + edit)
    result = ember("train", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


def test_a_diverging_run_fails_and_leaves_nothing(tmp_path, image_folder):
    config = folder_config(tmp_path, image_folder)
    result = ember("train", str(config), "--out", str(tmp_path / "run"), "--set", "train.lr=1e30",
                   "--set", "train.optimizer=sgd", "--set", "train.epochs=3")
    assert result.returncode == 2 and "training diverged" in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.yaml"]


def test_out_under_a_file_is_one_line(tmp_path, image_folder):
    config = folder_config(tmp_path, image_folder)
    (tmp_path / "afile").write_text("x")
    result = ember("train", str(config), "--out", str(tmp_path / "afile" / "run"), "--set", "train.epochs=1")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_non_linear_non_softmax_head_is_refused():
    with pytest.raises(config_lib.ConfigError, match="ends in a 'sigmoid' activation"):
        ic.build_model((4, 4, 1), 3, layers=["Flatten", {"Dense": {"units": 3, "activation": "sigmoid"}}])
