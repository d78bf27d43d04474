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
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from ember import datasets
from ember import layers as ember_layers
from ember.errors import DatasetError
from ember.evaluation import classification, plots
from ember.models import Sequential, create_model, list_models
from ember.tasks.config import ConfigError, RunConfig, Section, did_you_mean

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
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


# -- preprocessing ------------------------------------------------------------------------------------
def to_model_input(x: np.ndarray, image_size=None, color_mode=None) -> np.ndarray:
    """uint8 or float images (N, H, W) or (N, H, W, C) -> float32 (N, H', W', C') in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise DatasetError(f"images must have shape (N, H, W) or (N, H, W, C) with 1, 3 or 4 channels, got {x.shape}")
    images = torch.from_numpy(np.ascontiguousarray(x))
    images = images.float() / 255.0 if not images.is_floating_point() else images.float()
    images = images[..., :3]  # drop alpha
    if color_mode == "grayscale" and images.shape[-1] == 3:
        images = (images * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)  # ITU-R 601, as Pillow's "L"
    elif color_mode == "rgb" and images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    if image_size is not None and tuple(images.shape[1:3]) != tuple(image_size):
        nchw = images.permute(0, 3, 1, 2)
        nchw = F.interpolate(nchw, size=tuple(image_size), mode="bilinear", align_corners=False, antialias=True)
        images = nchw.permute(0, 2, 3, 1)
    return images.clamp_(0, 1).contiguous().numpy()


def read_image(path: Path, color_mode: str, image_size=None) -> np.ndarray:
    """One image file as uint8 (H, W, C), converted to `color_mode` and resized bilinearly with Pillow."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image = image.convert("L" if color_mode == "grayscale" else "RGB")
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None
    return array[..., None] if array.ndim == 2 else array


def read_images(paths, color_mode: str, image_size=None) -> np.ndarray:
    """Image files as uint8 (N, H, W, C); without `image_size` they must share the first one's size."""
    arrays = []
    for path in paths:
        array = read_image(path, color_mode, image_size)
        if arrays and array.shape != arrays[0].shape:
            raise DatasetError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, but {paths[0]} is "
                               f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; set data.image_size to resize them all")
        arrays.append(array)
    return np.stack(arrays)


# -- data sources ------------------------------------------------------------------------------------
def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _files_by_class(root: Path, class_names=None) -> tuple[list[Path], list[int], list[str]]:
    folders = _class_folders(root)
    names = [p.name for p in folders]
    if class_names is not None and names != class_names:
        raise DatasetError(f"{root}: class folders {names} differ from the training classes {class_names}")
    if len(folders) < 2:
        raise DatasetError(f"{root}: needs one subfolder per class (at least two), found {len(folders)}")
    files, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise DatasetError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [label] * len(found)
    return files, labels, names


def load_folder(root, image_size=None, color_mode=None, test_split=0.2, seed=0, hold_out=True):
    """((x_train, y_train), (x_test, y_test), class_names) from a class-per-subfolder image tree.

    A tree with train/ and test/ folders keeps that split; otherwise `test_split` of the images, drawn
    with `seed`, is held out for testing (all of them when `hold_out` is false: evaluating a model).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data.folder: no such folder {str(root)!r}")
    color_mode = color_mode or "rgb"
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, train_labels, names = _files_by_class(root / "train")
        test_files, test_labels, _ = _files_by_class(root / "test", names)
        order = np.random.default_rng(seed).permutation(len(train_files))
        train_files, train_labels = [train_files[i] for i in order], [train_labels[i] for i in order]
    else:
        files, labels, names = _files_by_class(root)
        order = np.random.default_rng(seed).permutation(len(files))
        n_test = max(1, int(round(len(files) * test_split))) if hold_out else len(files)
        test_idx, train_idx = order[:n_test], order[n_test:]
        train_files, train_labels = [files[i] for i in train_idx], [labels[i] for i in train_idx]
        test_files, test_labels = [files[i] for i in test_idx], [labels[i] for i in test_idx]
    size = image_size or read_image((train_files or test_files)[0], color_mode).shape[:2]
    x_test = read_images(test_files, color_mode, size)
    x_train = read_images(train_files, color_mode, size) if train_files else x_test[:0]
    return (x_train, np.array(train_labels)), (x_test, np.array(test_labels)), names


def load_npz(path, test_split=0.2, seed=0, hold_out=True):
    """Arrays x_train, y_train[, x_test, y_test, class_names]; without a test part, `test_split` of the
    samples is held out (all of them when `hold_out` is false). Object arrays are refused, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data.npz: no such file {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as arrays:  # never unpickle a data file
            contents = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npz of plain arrays ({e})") from None
    for key in ("x_train", "y_train"):
        if key not in contents:
            raise DatasetError(f"{path}: missing array {key!r} (has {', '.join(contents) or 'nothing'})")
    x, y = contents["x_train"], contents["y_train"].astype(np.int64).reshape(-1)
    if len(x) != len(y):
        raise DatasetError(f"{path}: x_train has {len(x)} samples but y_train has {len(y)}")
    if "x_test" in contents and "y_test" in contents:
        test = contents["x_test"], contents["y_test"].astype(np.int64).reshape(-1)
    elif not hold_out:
        test, (x, y) = (x, y), (x[:0], y[:0])
    else:
        order = np.random.default_rng(seed).permutation(len(x))
        n_test = max(1, int(round(len(x) * test_split)))
        test, (x, y) = (x[order[:n_test]], y[order[:n_test]]), (x[order[n_test:]], y[order[n_test:]])
    num_classes = int(max(y.max(initial=0), test[1].max(initial=0))) + 1
    if "class_names" in contents:
        names = [str(n) for n in contents["class_names"]]
        if len(names) < num_classes:
            raise DatasetError(f"{path}: labels go up to {num_classes - 1} but class_names has {len(names)} entries")
    else:
        names = [str(i) for i in range(num_classes)]
    if min(y.min(initial=0), test[1].min(initial=0)) < 0:
        raise DatasetError(f"{path}: labels must be class indices 0..{num_classes - 1}")
    return (x, y), test, names


def load_data(*, dataset=None, folder=None, npz=None, image_size=None, color_mode=None, test_split=0.2,
              subset=None, seed=0, hold_out=True) -> Images:
    """Model-ready train and test images from exactly one of `dataset`, `folder` and `npz` (see `Data`)."""
    seed = 0 if seed is None else seed
    if dataset is not None:
        (x_train, y_train), (x_test, y_test) = getattr(datasets, dataset).load_data()
        names, source = NAMED[dataset](), f"dataset {dataset}"
    elif folder is not None:
        (x_train, y_train), (x_test, y_test), names = load_folder(folder, image_size, color_mode, test_split, seed,
                                                                  hold_out)
        source = f"folder {folder}"
    else:
        (x_train, y_train), (x_test, y_test), names = load_npz(npz, test_split, seed, hold_out)
        source = f"npz {npz}"
    if subset is not None:
        x_train, y_train = x_train[:subset], y_train[:subset]
    return Images(to_model_input(x_train, image_size, color_mode), np.asarray(y_train, dtype=np.int64),
                  to_model_input(x_test, image_size, color_mode), np.asarray(y_test, dtype=np.int64),
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
    if model.output_activation() != "softmax":
        model.add(ember_layers.Activation("softmax"))
    return model


# -- the task, as the runner calls it ---------------------------------------------------------------
class ImageClassification:
    name = "image_classification"
    config_class = Config
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    def load_data(self, config: Config) -> Images:
        return load_data(**config.data.model_dump(exclude={"validation_split"}), seed=config.train.seed)

    def evaluation_data(self, model, data_arg: str, seed=0) -> Images:
        """Test data named on the command line, prepared as `model` expects: a dataset name (its test split),
        an .npz (x_test/y_test, else all of it) or an image folder (its test/ part, else every image)."""
        prep = model.metadata.get("preprocessing") or {}
        source = ("dataset" if data_arg in NAMED else "npz" if data_arg.endswith(".npz") else "folder")
        images = load_data(**{source: data_arg}, image_size=prep.get("image_size"), color_mode=prep.get("color_mode"),
                           seed=seed, hold_out=False)
        expected = model.metadata.get("class_names")
        if expected is not None and len(images.class_names) != len(expected):
            raise DatasetError(f"{data_arg}: has {len(images.class_names)} classes, the model knows {len(expected)}")
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
            sections.append(f"## Most confused classes\n\n| true | predicted as | test images |\n|---|---|---|\n{rows}\n")
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
