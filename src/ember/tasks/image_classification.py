"""image_classification: images in, one class out.

Data comes from a named dataset (mnist, fashion_mnist, digits), a folder with one subfolder per class
(PNG/JPEG/BMP/GIF read with Pillow), or an `.npz` holding x_train, y_train[, x_test, y_test, class_names].
Images become float32 (N, H, W, C) arrays in [0, 1], resized and converted to grayscale or RGB as
configured; the same preprocessing is stored in the model file so `ember predict` applies it to new images.
"""
import dataclasses
import inspect
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ember import datasets
from ember import layers as ember_layers
from ember.data.images import load_folder, load_npz, read_image, to_model_input
from ember.errors import DatasetError
from ember.evaluation import classification, plots
from ember.models import Sequential, create_model, list_models
from ember.tasks.config import ConfigError, RunConfig, Section, did_you_mean

NAMED = {
    "mnist": lambda: [str(d) for d in range(10)],
    "fashion_mnist": lambda: list(datasets.fashion_mnist.CLASS_NAMES),
    "digits": lambda: [str(d) for d in range(10)],
}


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

    @field_validator("folder", "npz")
    @classmethod
    def _absolute(cls, path):
        # a run's config.yaml then finds its data from any working directory
        return None if path is None else str(Path(path).expanduser().absolute())

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


class ModelSpec(Section):
    name: str | None = Field(None, description="a registered model: " + ", ".join(list_models()))
    args: dict[str, Any] = Field({}, description="keyword arguments for the registered model's builder")
    layers: list[str | dict[str, Any]] | None = Field(None, description="a Sequential as a list of ember layers")

    @field_validator("name")
    @classmethod
    def _registered(cls, name):
        if name is not None and name not in list_models():
            raise ValueError(f"unknown model {name!r}{did_you_mean(name, list_models())}; "
                             f"registered: {', '.join(list_models())}")
        return name

    @model_validator(mode="after")
    def _name_or_layers(self):
        if (self.name is None) == (self.layers is None):
            raise ValueError("set exactly one of model.name (a registered model) and model.layers (a list of layers)")
        if self.layers is not None and self.args:
            raise ValueError("model.args applies to model.name only; give layer arguments in model.layers")
        return self


class Config(RunConfig):
    task: Literal["image_classification"]
    data: Data
    model: ModelSpec = ModelSpec(name="seed_cnn")


@dataclasses.dataclass
class Images:
    """Model-ready arrays: float32 (N, H, W, C) in [0, 1] and int64 labels."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str

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
def _init_arguments(cls) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}


# layers a config may name: ember's layers and Keras's aliases (MaxPool2D, ...); the input comes from the data
LAYER_NAMES = {name: getattr(ember_layers, name) for name in ember_layers.__all__
               if isinstance(getattr(ember_layers, name), type) and name not in ("Layer", "InputLayer")}


def layer_from_spec(spec, index: int):
    """"Flatten" or {"Conv2D": {"filters": 32, "kernel_size": 3}} -> the layer."""
    where = f"model.layers[{index}]"
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and len(spec) == 1:
        name, kwargs = next(iter(spec.items()))
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{where}: arguments of {name} must be a mapping, got {kwargs!r}")
    else:
        raise ConfigError(f"{where}: write a layer as a name (Flatten) or {{Name: {{argument: value}}}}, got {spec!r}")
    if name not in LAYER_NAMES:
        raise ConfigError(f"{where}: unknown layer {name!r}{did_you_mean(name, LAYER_NAMES)}")
    cls = LAYER_NAMES[name]
    allowed = _init_arguments(cls)
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"{where}: {name} has no argument {key!r}{did_you_mean(key, allowed)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {name}: {e}") from None


def build_model(input_shape: tuple, num_classes: int, *, name=None, args=None, layers=None) -> Sequential:
    """The registered model `name` (built with `args`) or a Sequential of `layers` specs, for `input_shape`
    images, ending in a `num_classes`-way softmax."""
    what = name or "model.layers"
    try:
        if name is not None:
            try:
                model = create_model(name, input_shape=input_shape, num_classes=num_classes, **(args or {}))
            except TypeError as e:
                raise ConfigError(f"model.args: {name}: {e}") from None
        else:
            model = Sequential([layer_from_spec(s, i) for i, s in enumerate(layers)], name="sequential")
        model.build((None, *input_shape))
    except RuntimeError as e:  # torch's shape errors: a kernel or pool larger than what is left of the image
        raise ConfigError(f"{what} cannot take images of shape {input_shape}: {str(e).splitlines()[0]} "
                          "(set data.image_size to a larger size)") from None
    outputs = model.output_shape
    if outputs is None or len(outputs) != 2 or outputs[1] != num_classes:
        raise ConfigError(f"{what} outputs shape {outputs}, but the data has {num_classes} classes: "
                          f"end with Dense: {{units: {num_classes}}}")
    final = model.output_activation()
    if final in (None, "linear"):
        model.add(ember_layers.Activation("softmax"))
    elif final != "softmax":
        raise ConfigError(f"{what} ends in a {final!r} activation; a classifier ends in softmax (or in a linear "
                          "layer, which gets one)")
    return model


# -- the task, as the runner calls it ---------------------------------------------------------------
class ImageClassification:
    name = "image_classification"
    config_class = Config
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    def load_data(self, config: Config) -> Images:
        return load_data(**config.data.model_dump(exclude={"validation_split"}))

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
        return data.x_train, data.y_train

    def metadata(self, data: Images) -> dict:
        return {"task": self.name, "class_names": data.class_names, "preprocessing": data.preprocessing()}

    def evaluate(self, model, data: Images, batch_size: int) -> tuple[dict, dict]:
        """(metrics for metrics.json, details for the report)."""
        probabilities = model.predict(data.x_test, batch_size=batch_size, verbose=0)
        metrics = classification.classification_metrics(data.y_test, probabilities, data.class_names)
        return metrics, {"probabilities": probabilities}

    def summary_line(self, metrics: dict) -> str:
        return (f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f}, "
                f"macro F1 {metrics['test_macro_f1']:.4f} on {metrics['test_samples']:,} test images")

    def report_sections(self, run_dir: Path, data: Images, metrics: dict, details: dict, config: Config) -> list[str]:
        """Plots for the run, and the report's task-specific markdown."""
        sections = []
        names = data.class_names
        if config.output.plots:
            plots.confusion_matrix(metrics["confusion_matrix"], names, run_dir / "plots" / "confusion_matrix.png")
            sections.append("## Confusion matrix\n\nRows are true classes, columns predicted classes; "
                            "the colour is the share of the row.\n\n![confusion matrix](plots/confusion_matrix.png)\n")
        pairs = classification.most_confused(metrics["confusion_matrix"], names)
        if pairs:
            rows = "\n".join(f"| {t} | {p} | {n} |" for t, p, n in pairs)
            sections.append("## Most confused classes\n\n| true | predicted as | test images |\n|---|---|---|\n"
                            f"{rows}\n")
        rows = "\n".join(f"| {name} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
                         for name, m in metrics["per_class"].items())
        sections.append("## Per class\n\n| class | precision | recall | F1 | test images |\n|---|---|---|---|---|\n"
                        f"{rows}\n")
        k = min(config.output.worst_examples, len(data.y_test))
        if config.output.plots and k:
            probabilities = details["probabilities"]
            losses = classification.per_sample_loss(data.y_test, probabilities)
            worst = np.argsort(-losses, kind="stable")[:k]
            predicted = probabilities[worst].argmax(axis=1)
            captions = [f"true {names[data.y_test[i]]}\npred {names[p]} ({probabilities[i, p]:.2f})"
                        for i, p in zip(worst, predicted)]
            plots.image_grid(data.x_test[worst], captions, run_dir / "plots" / "highest_loss.png",
                             title=f"The {k} test images with the highest loss (misclassified in red)",
                             alerts=[p != data.y_test[i] for i, p in zip(worst, predicted)])
            sections.append(f"## Highest-loss test images\n\nThe {k} test images the model got most wrong "
                            "(true class, predicted class and its probability).\n\n"
                            "![highest-loss test images](plots/highest_loss.png)\n")
        return sections

    def predict_files(self, model, paths, top_k: int = 3) -> list[dict]:
        """Top-k classes with probabilities for each image file."""
        prep = model.metadata.get("preprocessing")
        names = model.metadata.get("class_names")
        if not prep or not names:
            raise DatasetError("the model file has no image-classification metadata (class names and "
                               "preprocessing): train it with `ember train`")
        images = np.stack([read_image(Path(p), prep["color_mode"], prep["image_size"]) for p in paths])
        probabilities = model.predict(to_model_input(images), verbose=0)
        top = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [{"input": str(path), "predictions": [{"label": names[j], "probability": float(probabilities[i, j])}
                                                     for j in top[i]]}
                for i, path in enumerate(paths)]


TASK = ImageClassification()
