"""image_classification: images in, one class out.

Data comes from a named dataset (mnist, fashion_mnist, digits), a folder with one subfolder per class
(PNG/JPEG/BMP/GIF read with Pillow), or an `.npz` holding x_train, y_train[, x_test, y_test, class_names].
Images become float32 (N, H, W, C) arrays in [0, 1], resized and converted to grayscale or RGB as
configured; the same preprocessing is stored in the model file so `ember predict` applies it to new images.
"""
import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ember import datasets
from ember.data.arrays import ArrayData
from ember.data.images import load_folder, load_npz, read_image, to_model_input
from ember.errors import DatasetError
from ember.evaluation import plots, report
from ember.models import Sequential
from ember.tasks.config import ConfigError, RunConfig, Section, absolute_path
from ember.tasks.model_specs import (AugmentedModelSpec, create_registered, finish_classifier, layer_from_spec,
                                     with_augmentation)

NAMED = {
    "mnist": lambda: [str(d) for d in range(10)],
    "fashion_mnist": lambda: list(datasets.fashion_mnist.CLASS_NAMES),
    "digits": lambda: [str(d) for d in range(10)],
}


class Generated(Section):
    model: str = Field(description="an image_generation run's model.ember, drawing the same classes")
    per_class: int = Field(ge=1, description="generated images added to the training set per class")
    temperature: float = Field(1.0, gt=0, description="spread of the latent points: below 1 draws more typical, "
                               "less varied images")
    seed: int = Field(0, ge=0)

    _absolute = field_validator("model")(absolute_path)


class Data(Section):
    dataset: Literal["mnist", "fashion_mnist", "digits"] | None = None
    folder: str | None = Field(None, description="one subfolder per class, or train/ and test/ holding those")
    npz: str | None = Field(None, description="arrays x_train, y_train and optionally x_test, y_test, class_names")
    image_size: list[int] | None = Field(None, description="[height, width]; default: the images' own size")
    color_mode: Literal["grayscale", "rgb"] | None = Field(None, description="default: as stored (folders: rgb)")
    validation_split: float = Field(0.1, ge=0, lt=1, description="last fraction of the training set")
    test_split: float = Field(0.2, gt=0, lt=1, description="held out for testing when the data has no test part")
    subset: int | None = Field(None, ge=1, description="train on the first N training samples only")
    split_seed: int = Field(0, ge=0, description="draws the test split of data without one (apart from train.seed, "
                            "so runs with different seeds test on the same images)")
    generated: Generated | None = Field(None, description="add images drawn by a generative model to the training "
                                        "set (never to validation or test)")

    _absolute = field_validator("folder", "npz")(absolute_path)

    @field_validator("image_size")
    @classmethod
    def _two_positive(cls, size):
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError("image_size is [height, width], two positive integers")
        return size

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("dataset", "folder", "npz") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of data.dataset, data.folder and data.npz"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class Config(RunConfig):
    task: Literal["image_classification"]
    data: Data
    model: AugmentedModelSpec = AugmentedModelSpec(name="seed_cnn")


@dataclasses.dataclass
class Images:
    """Model-ready arrays: float32 (N, H, W, C) in [0, 1] and int64 labels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str
    x_generated: np.ndarray | None = None  # added to the training part only
    y_generated: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def preprocessing(self) -> dict:
        height, width, channels = self.input_shape
        return {"image_size": [height, width], "color_mode": "rgb" if channels == 3 else "grayscale"}


def load_data(*, dataset=None, folder=None, npz=None, image_size=None, color_mode=None, test_split=0.2,
              subset=None, split_seed=0, hold_out=True) -> Images:
    """Model-ready train and test images from exactly one of `dataset`, `folder` and `npz` (see `Data`)."""
    if dataset is not None:
        (x_train, y_train), (x_test, y_test) = getattr(datasets, dataset).load_data()
        names, source = NAMED[dataset](), f"dataset {dataset}"
    elif folder is not None:
        (x_train, y_train), (x_test, y_test), names = load_folder(folder, image_size, color_mode, test_split,
                                                                  split_seed, hold_out)
        source = f"folder {folder}"
    else:
        (x_train, y_train), (x_test, y_test), names = load_npz(npz, test_split, split_seed, hold_out)
        source = f"npz {npz}"
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    x_train = to_model_input(x_train, image_size, color_mode, f"{source}: training images")
    x_test = to_model_input(x_test, image_size, color_mode, f"{source}: test images")
    if x_train.shape[1:] != x_test.shape[1:] and len(x_train):
        raise DatasetError(f"{source}: training images are {x_train.shape[1:]}, test images {x_test.shape[1:]}; "
                           "set data.image_size (and data.color_mode) so they match")
    return Images(x_train, np.asarray(y_train, dtype=np.int64), x_test, np.asarray(y_test, dtype=np.int64),
                  names, source)


# -- models -----------------------------------------------------------------------------------------
def build_model(input_shape: tuple, num_classes: int, *, name=None, args=None, layers=None,
                augmentation=()) -> Sequential:
    """The registered model `name` (built with `args`) or a Sequential of `layers` specs, for `input_shape`
    images, ending in a `num_classes`-way softmax, after the `augmentation` layers."""
    what = name or "model.layers"
    try:
        if name is not None:
            model = create_registered(name, args, input_shape=input_shape, num_classes=num_classes)
        else:
            model = Sequential([layer_from_spec(s, i) for i, s in enumerate(layers)], name="sequential")
        model = with_augmentation(model, list(augmentation), what)
        model.build((None, *input_shape))
    except RuntimeError as e:  # torch's shape errors: a kernel or pool larger than what is left of the image
        raise ConfigError(f"{what} cannot take images of shape {input_shape}: {str(e).splitlines()[0]} "
                          "(set data.image_size to a larger size)") from None
    return finish_classifier(model, what, num_classes)


# -- the task, as the runner calls it ---------------------------------------------------------------
class ImageClassification:
    name = "image_classification"
    config_class = Config
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    def loss_and_metrics(self, config):
        return self.loss, self.metrics

    def test_size(self, data) -> int:
        return len(data.y_test)

    def load_data(self, config: Config) -> Images:
        images = load_data(**config.data.model_dump(exclude={"validation_split", "generated"}))
        generated = config.data.generated
        if generated is not None:
            from ember.tasks.image_generation import generated_training_data
            images.x_generated, images.y_generated = generated_training_data(
                generated.model, images.class_names, images.input_shape, generated.per_class, seed=generated.seed,
                temperature=generated.temperature)
            images.source += f" + {len(images.y_generated):,} generated"
        return images

    def evaluation_data(self, model, data_arg: str) -> Images:
        """Test data named on the command line, prepared as `model` expects: a dataset name (its test split),
        an .npz (x_test/y_test, else all of it) or an image folder (its test/ part, else every image)."""
        prep = model.metadata.get("preprocessing") or {}
        if data_arg in NAMED:
            source = "dataset"
        elif data_arg.endswith(".npz") or Path(data_arg).is_dir():
            source = "npz" if data_arg.endswith(".npz") else "folder"
        else:
            raise DatasetError(f"--data {data_arg}: not a dataset name ({', '.join(NAMED)}), an .npz file "
                               "or an image folder")
        images = load_data(**{source: data_arg}, image_size=prep.get("image_size"), color_mode=prep.get("color_mode"),
                           hold_out=False)
        expected = model.metadata.get("class_names")
        if expected is not None and images.class_names != expected:
            raise DatasetError(f"{data_arg}: classes {images.class_names} differ from the model's {expected}")
        return images

    def build_model(self, config: Config, data: Images):
        return build_model(data.input_shape, len(data.class_names), **config.model.model_dump())

    def fit_arrays(self, config: Config, data: Images):
        if data.x_generated is None:
            return data.x_train, data.y_train
        real = _real_training_count(len(data.y_train), config.data.validation_split)
        return (np.concatenate([data.x_generated, data.x_train[:real]]),
                np.concatenate([data.y_generated, data.y_train[:real]]))

    def validation_data(self, config: Config, data: Images):
        """With generated images, the validation set is still the last data.validation_split of the real ones;
        otherwise the runner splits the training arrays itself (None)."""
        real = _real_training_count(len(data.y_train), config.data.validation_split)
        if data.x_generated is None or real == len(data.y_train):
            return None
        return ArrayData(data.x_train[real:], data.y_train[real:])

    def metadata(self, data: Images) -> dict:
        return {"task": self.name, "class_names": data.class_names, "preprocessing": data.preprocessing()}

    def evaluate(self, model, data: Images, batch_size: int) -> tuple[dict, dict]:
        return report.evaluate_classifier(model, data.x_test, data.y_test, data.class_names, batch_size)

    def summary_line(self, metrics: dict) -> str:
        return report.summary_line(metrics, "test images")

    def report_sections(self, run_dir: Path, data: Images, metrics: dict, details: dict, config: Config) -> list[str]:
        """Plots for the run, and the report's task-specific markdown."""
        names = data.class_names
        sections = report.classification_sections(run_dir, metrics, names, config.output.plots, "test images")
        k = min(config.output.worst_examples, len(data.y_test))
        if config.output.plots and k:
            worst = report.highest_loss(data.y_test, details["probabilities"], k)
            captions = [f"true {names[data.y_test[i]]}\npred {names[p]} ({prob:.2f})" for i, p, prob in worst]
            plots.image_grid(data.x_test[[i for i, _, _ in worst]], captions, run_dir / "plots" / "highest_loss.png",
                             title=f"The {k} test images with the highest loss (misclassified in red)",
                             alerts=[p != data.y_test[i] for i, p, _ in worst])
            sections.append(f"## Highest-loss test images\n\nThe {k} test images the model got most wrong "
                            "(true class, predicted class and its probability).\n\n"
                            "![highest-loss test images](plots/highest_loss.png)\n")
        return sections

    def predict(self, model, inputs, top_k: int = 3) -> list[dict]:
        """Top-k classes with probabilities for each image file."""
        prep = model.metadata.get("preprocessing")
        names = model.metadata.get("class_names")
        if not prep or not names:
            raise DatasetError("the model file has no image-classification metadata (class names and "
                               "preprocessing): train it with `ember train`")
        missing = [p for p in inputs if not Path(p).is_file()]
        if missing:
            raise DatasetError(f"{missing[0]}: no such input file")
        images = np.stack([read_image(Path(p), prep["color_mode"], prep["image_size"]) for p in inputs])
        return report.top_k(inputs, model.predict(to_model_input(images), verbose=0), names, top_k)


def _real_training_count(n: int, validation_split: float) -> int:
    return int(n * (1 - validation_split))  # as Model.fit's validation_split keeps for training


TASK = ImageClassification()
