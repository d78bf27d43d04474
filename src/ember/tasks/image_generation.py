"""image_generation: learn to draw images of each class (a conditional VAE), to look at or to train on.

The data section is image_classification's (a named dataset, a folder or an .npz). The run saves a model
that `ember generate MODEL --label 3 -n 64 --out grid.png` samples from, and that an image_classification
run adds to its training set with `data.generated: {model: RUN/model.ember, per_class: N}`.
"""
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ember.errors import DatasetError
from ember.evaluation import plots
from ember.tasks.config import ConfigError, RunConfig
from ember.tasks.image_classification import Data, ImageClassification, Images
from ember.tasks.model_specs import ModelSpec, create_registered

SAMPLES_PER_CLASS = 8  # in the report's grid


class Config(RunConfig):
    task: Literal["image_generation"]
    data: Data
    model: ModelSpec = Field(ModelSpec(name="conditional_vae"), description="a registered generative model")


class ImageGeneration(ImageClassification):
    name = "image_generation"
    config_class = Config

    def loss_and_metrics(self, config):
        return None, []  # the model's own loss: its negative evidence lower bound

    def build_model(self, config: Config, data: Images):
        if config.model.name != "conditional_vae":
            raise ConfigError(f"model.name: image_generation trains conditional_vae, got {config.model.name!r}")
        height, width, _ = data.input_shape
        if height % 4 or width % 4:
            raise ConfigError(f"data.image_size: conditional_vae needs a height and width divisible by 4, the "
                              f"images are {height}x{width}")
        return create_registered("conditional_vae", config.model.args, input_shape=data.input_shape,
                                 num_classes=len(data.class_names))

    def evaluate(self, model, data: Images, batch_size: int) -> tuple[dict, dict]:
        loss = model.evaluate(data.x_test, data.y_test, batch_size=batch_size, verbose=0)
        labels = np.repeat(np.arange(len(data.class_names)), SAMPLES_PER_CLASS)
        samples = {"labels": labels, "images": model.generate(labels, seed=0)}  # for the report
        return {"test_loss": float(loss), "test_samples": len(data.y_test)}, samples

    def summary_line(self, metrics: dict) -> str:
        return (f"test loss {metrics['test_loss']:.2f} (negative evidence lower bound per image) on "
                f"{metrics['test_samples']:,} test images")

    def report_sections(self, run_dir: Path, data: Images, metrics: dict, details: dict, config: Config) -> list[str]:
        if not config.output.plots:
            return []
        labels = details["labels"]
        plots.image_grid(details["images"], [data.class_names[i] for i in labels], run_dir / "plots" / "samples.png",
                         columns=SAMPLES_PER_CLASS, title="Generated images, one row per class")
        return ["## Generated images\n\nEight images of each class, decoded from random latent points "
                "(seed 0).\n\n![generated images](plots/samples.png)\n"]

    def predict(self, model, inputs, top_k: int = 3) -> list[dict]:
        raise DatasetError("an image-generation model draws images rather than classifying them: use "
                           "`ember generate MODEL --label CLASS`")


def generate(model, label: str, n: int, *, seed: int | None = None, temperature: float = 1.0,
             path: str = "model") -> np.ndarray:
    """`n` float32 images (n, H, W, C) in [0, 1] of the class named `label` (or numbered, when names are
    not numbers)."""
    names = model.metadata.get("class_names") or []
    if label in names:
        index = names.index(label)
    elif label.isdigit() and int(label) < len(names):
        index = int(label)
    else:
        raise DatasetError(f"--label {label}: {path} draws the classes {', '.join(names)}")
    return model.generate(np.full(n, index), seed=seed, temperature=temperature)


def generated_training_data(model_path: str, class_names: list[str], input_shape: tuple, per_class: int,
                            *, seed: int = 0, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of every class from the image_generation model at `model_path`, checked to draw the
    same classes and image shape as the data they join."""
    from ember import models
    model = models.load_model(model_path)
    if model.metadata.get("task") != "image_generation":
        raise ConfigError(f"data.generated.model: {model_path} is not an image-generation model (task "
                          f"{model.metadata.get('task')!r})")
    if model.metadata.get("class_names") != class_names:
        raise ConfigError(f"data.generated.model: {model_path} draws the classes {model.metadata.get('class_names')}, "
                          f"the data has {class_names}")
    if tuple(model.image_shape) != tuple(input_shape):
        raise ConfigError(f"data.generated.model: {model_path} draws images of shape {tuple(model.image_shape)}, "
                          f"the data's are {tuple(input_shape)}")
    labels = np.repeat(np.arange(len(class_names)), per_class)
    return model.generate(labels, seed=seed, temperature=temperature), labels.astype(np.int64)


TASK = ImageGeneration()
