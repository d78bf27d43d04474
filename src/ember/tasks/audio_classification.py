"""audio_classification: a recording in, one class out (spoken digits on FSDD).

The model takes raw waveforms cut or zero-padded to `data.length` samples; its first layers compute the
features (e.g. `MelSpectrogram`), so the saved model needs only the sample rate and the clip length to
classify a new `.wav` (`ember transcribe MODEL file.wav`).
"""
import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ember import datasets
from ember.data.audio import load_clips
from ember.errors import DatasetError
from ember.evaluation import report
from ember.tasks.config import ConfigError, RunConfig, Section
from ember.tasks.model_specs import ModelSpec, create_registered, finish_classifier


class Data(Section):
    dataset: Literal["fsdd"] = "fsdd"
    split: str = Field("official", description="official (recordings 0-4 of each speaker and digit are the test "
                                               "set) or speaker:NAME (that speaker is the test set)")
    length: int = Field(8000, ge=64, description="samples per clip: longer recordings are cut, shorter zero-padded")
    validation_split: float = Field(0.1, ge=0, lt=1, description="random fraction of the training recordings")
    split_seed: int = Field(0, ge=0, description="shuffles the training recordings before the validation split")

    @field_validator("split")
    @classmethod
    def _known_split(cls, split: str) -> str:
        speaker = split.removeprefix("speaker:")
        if split != "official" and not (split.startswith("speaker:") and speaker in datasets.fsdd.SPEAKERS):
            raise ValueError(f"expected official or speaker:NAME with NAME one of {', '.join(datasets.fsdd.SPEAKERS)}")
        return split


class Config(RunConfig):
    task: Literal["audio_classification"]
    data: Data = Data()
    model: ModelSpec = ModelSpec(name="audio_cnn")


@dataclasses.dataclass
class Clips:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    sample_rate: int
    source: str


def load_data(*, split="official", length=8000, split_seed=0) -> Clips:
    (x_train, y_train), (x_test, y_test) = datasets.fsdd.load_data(split, length=length)
    order = np.random.default_rng(split_seed).permutation(len(x_train))  # validation_split takes the tail
    return Clips(x_train[order], y_train[order], x_test, y_test, list(datasets.fsdd.CLASS_NAMES),
                 datasets.fsdd.SAMPLE_RATE, f"dataset fsdd ({split} split)")


def build_model(length: int, num_classes: int, sample_rate: int, *, name=None, args=None, layers=None):
    what = name or "model.layers"
    if name is None:
        raise ConfigError("model.layers: an audio model is a registered model (model.name: audio_cnn)")
    model = create_registered(name, args, input_length=length, num_classes=num_classes, sampling_rate=sample_rate)
    try:
        model.build((None, length))
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"{what} cannot take clips of {length} samples: {str(e).splitlines()[0]}") from None
    return finish_classifier(model, what, num_classes)


class AudioClassification:
    name = "audio_classification"
    config_class = Config
    loss = "sparse_categorical_crossentropy"
    metrics = ["accuracy"]

    def loss_and_metrics(self, config):
        return self.loss, self.metrics

    def test_size(self, data: Clips) -> int:
        return len(data.y_test)

    def load_data(self, config: Config) -> Clips:
        return load_data(split=config.data.split, length=config.data.length, split_seed=config.data.split_seed)

    def build_model(self, config: Config, data: Clips):
        return build_model(data.x_train.shape[1], len(data.class_names), data.sample_rate,
                           **config.model.model_dump())

    def fit_arrays(self, config: Config, data: Clips):
        return data.x_train, data.y_train

    def metadata(self, data: Clips) -> dict:
        return {"task": self.name, "class_names": data.class_names,
                "preprocessing": {"sample_rate": data.sample_rate, "length": int(data.x_train.shape[1])}}

    def _preprocessing(self, model) -> tuple[int, int, list[str]]:
        prep, names = model.metadata.get("preprocessing") or {}, model.metadata.get("class_names")
        if not names or not isinstance(prep.get("sample_rate"), int) or not isinstance(prep.get("length"), int):
            raise DatasetError("the model file has no audio-classification metadata (sample rate, clip length, "
                               "class names): train it with `ember train`")
        return prep["sample_rate"], prep["length"], names

    def evaluation_data(self, model, data_arg: str) -> Clips:
        _, length, names = self._preprocessing(model)
        split = "official" if data_arg == "fsdd" else data_arg.removeprefix("fsdd:")
        if data_arg != "fsdd" and not data_arg.startswith("fsdd:speaker:"):
            raise DatasetError(f"--data {data_arg}: expected fsdd (its official test split) or fsdd:speaker:NAME")
        clips = load_data(split=split, length=length)
        return dataclasses.replace(clips, x_train=clips.x_train[:0], y_train=clips.y_train[:0], class_names=names)

    def evaluate(self, model, data: Clips, batch_size: int) -> tuple[dict, dict]:
        return report.evaluate_classifier(model, data.x_test, data.y_test, data.class_names, batch_size)

    def summary_line(self, metrics: dict) -> str:
        return report.summary_line(metrics, "test recordings")

    def report_sections(self, run_dir: Path, data: Clips, metrics: dict, details: dict, config: Config) -> list[str]:
        return report.classification_sections(run_dir, metrics, data.class_names, config.output.plots,
                                              "test recordings")

    def predict(self, model, inputs, top_k: int = 3) -> list[dict]:
        """Top-k classes for each .wav file."""
        sample_rate, length, names = self._preprocessing(model)
        clips = load_clips(list(inputs), sample_rate=sample_rate, length=length)
        return report.top_k(inputs, model.predict(clips, verbose=0), names, top_k)


TASK = AudioClassification()
