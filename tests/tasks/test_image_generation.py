"""image_generation end to end on the 8x8 digits that ship with scikit-learn: train a conditional VAE, draw
images with `ember generate`, add them to a classifier's training set; augmentation in configs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ember import models
from tests.conftest import run_cli

pytest.importorskip("sklearn")


def ember_process(*args):
    """`ember ...` in a fresh process: what a user's shell runs."""
    env = {**os.environ, "EMBER_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ember.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def ember(*args):
    """`ember ...` in this process (no interpreter start-up: these tests stay fast), output captured."""
    return run_cli(*args)


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cvae")
    config = write(folder / "cvae.yaml", """\
task: image_generation
data: {dataset: digits, subset: 600, validation_split: 0.0}
model: {name: conditional_vae, args: {latent_dim: 2, hidden: 64, filters: [16, 32]}}
train: {epochs: 4, batch_size: 32, optimizer: adam, seed: 0}
""")
    result = ember("train", str(config), "--out", str(folder / "run"))
    assert result.returncode == 0, result.stderr
    assert "test loss" in result.stdout and "negative evidence lower bound" in result.stdout
    return folder / "run"


def test_the_run_reports_a_finite_loss_and_a_grid_of_samples(generator_run):
    metrics = json.loads((generator_run / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"]) and metrics["test_samples"] > 0
    assert (generator_run / "plots" / "samples.png").stat().st_size > 0
    assert "![generated images](plots/samples.png)" in (generator_run / "report.md").read_text()


def test_generate_writes_a_grid_or_arrays_and_a_seed_repeats_them(generator_run, tmp_path):
    model_file = str(generator_run / "model.ember")
    grid = tmp_path / "threes.png"
    result = ember("generate", model_file, "--label", "3", "-n", "12", "--out", str(grid), "--columns", "4")
    assert result.returncode == 0, result.stderr
    with Image.open(grid) as picture:
        assert picture.size == (4 * 8 + 3 * 2, 3 * 8 + 2 * 2)  # 4 x 3 images of 8x8, 2-pixel gaps
    for name in ("a.npy", "b.npy"):
        assert ember_process("generate", model_file, "--label", "3", "-n", "5", "--seed", "7",
                             "--out", str(tmp_path / name)).returncode == 0
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (5, 8, 8, 1) and a.min() >= 0 and a.max() <= 1 and np.array_equal(a, b)
    here = models.load_model(model_file).generate([3] * 5, seed=7)  # this process draws the same images
    assert np.allclose(here, a, atol=1e-6)


@pytest.mark.parametrize("label, out, message", [
    ("12", "grid.png", "--label 12: "),
    ("3", "grid.gif", "write a .png grid or a .npy array"),
])
def test_generate_refuses_what_it_cannot_draw(generator_run, tmp_path, label, out, message):
    result = ember("generate", str(generator_run / "model.ember"), "--label", label, "--out", str(tmp_path / out))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr
    assert not (tmp_path / out).exists()


def test_generate_refuses_a_classifier(tmp_path):
    from ember import layers
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.metadata = {"task": "image_classification", "class_names": [str(i) for i in range(10)]}
    model.save(tmp_path / "classifier.ember")
    result = ember("generate", str(tmp_path / "classifier.ember"), "--label", "3", "--out", str(tmp_path / "g.png"))
    assert result.returncode == 2 and "not an image-generation model" in result.stderr
    assert not (tmp_path / "g.png").exists()


def classifier_config(tmp_path, generated: str = "", augmentation: str = ""):
    return write(tmp_path / "classifier.yaml", f"""\
task: image_classification
data:
  dataset: digits
  subset: 400
  validation_split: 0.25
{generated}
model:
  layers: [Flatten, {{Dense: {{units: 32, activation: relu}}}}, {{Dense: {{units: 10}}}}]
{augmentation}
train: {{epochs: 2, batch_size: 32, optimizer: adam, seed: 0}}
output: {{plots: false, report: false}}
""")


def test_generated_images_join_training_and_never_validation(generator_run, tmp_path):
    generated = f"  generated: {{model: {generator_run / 'model.ember'}, per_class: 5, temperature: 0.5}}"
    result = ember("train", str(classifier_config(tmp_path, generated)), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    # 400 real images: the last 100 validate; 300 real + 50 generated train
    assert "dataset digits + 50 generated (350 training / 100 validation" in result.stdout


def test_a_generator_of_another_image_size_is_refused(generator_run, tmp_path):
    generated = f"  image_size: [12, 12]\n  generated: {{model: {generator_run / 'model.ember'}, per_class: 5}}"
    result = ember("train", str(classifier_config(tmp_path, generated)), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "data.generated.model" in result.stderr and "(8, 8, 1)" in result.stderr
    assert not (tmp_path / "run").exists()


def test_augmentation_in_a_config_trains_and_only_augmentation_layers_are_allowed(tmp_path):
    augmentation = ("  augmentation:\n    - {RandomRotation: {factor: 0.05, fill_mode: constant}}\n"
                    "    - {RandomTranslation: {height_factor: 0.1, width_factor: 0.1}}\n    - MixUp")
    result = ember("train", str(classifier_config(tmp_path, augmentation=augmentation)), "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    model = models.load_model(tmp_path / "a" / "model.ember")
    assert [type(layer).__name__ for layer in model.layers][:3] == ["RandomRotation", "RandomTranslation", "MixUp"]
    predicted = ember("evaluate", str(tmp_path / "a"), "--json")
    assert predicted.returncode == 0, predicted.stderr
    bad = "  augmentation: [{Dense: {units: 3}}]"
    result = ember("train", str(classifier_config(tmp_path, augmentation=bad)), "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "model.augmentation[0]: Dense is not an augmentation layer" in result.stderr
