"""Applications, one file each, built from the library below them.

`TASKS` maps a config's `task:` name to the module that implements it; each module exposes `TASK`, an
object with the `Task` interface that the runner (`ember.tasks.runner`) calls. Modules are imported only
when a config names them.
"""
import importlib
from pathlib import Path
from typing import Protocol

TASKS: dict[str, str] = {
    "image_classification": "ember.tasks.image_classification",
    "image_generation": "ember.tasks.image_generation",
    "text_classification": "ember.tasks.text_classification",
    "recommendation": "ember.tasks.recommendation",
    "audio_classification": "ember.tasks.audio_classification",
    "translation": "ember.tasks.translation",
}


class Task(Protocol):
    name: str
    config_class: type       # RunConfig plus the task's `data` and `model` sections

    def loss_and_metrics(self, config) -> tuple[str, list[str]]: ...   # for Model.compile
    def test_size(self, data) -> int: ...                   # test samples (or users), for the progress line

    def load_data(self, config): ...                        # train and test arrays, class names, source
    def build_model(self, config, data): ...                # a built ember Model
    def fit_arrays(self, config, data): ...                 # (x, y) for Model.fit; (ArrayData, None) also works
    def metadata(self, data) -> dict: ...                   # JSON saved in the model file for predict
    def evaluate(self, model, data, batch_size: int) -> tuple[dict, dict]: ...   # (metrics.json, report details)
    def evaluation_data(self, model, data_arg: str): ...    # test data named on the command line
    def summary_line(self, metrics: dict) -> str: ...
    def report_sections(self, run_dir: Path, data, metrics: dict, details: dict, config) -> list[str]: ...
    def predict(self, model, inputs, top_k: int = 3) -> list[dict]: ...    # `ember predict` inputs (files, text)
    # optional: validation_data(config, data) -> ArrayData, a validation set of the task's own (no split);
    # callbacks(config, data) -> list, callbacks that run before the logger (so what they log is kept)


def get_task(name: str) -> Task:
    """The task registered under `name`; a KeyError names the known ones."""
    if name not in TASKS:
        from ember.tasks.config import did_you_mean
        raise KeyError(f"unknown task {name!r}{did_you_mean(name, TASKS)}; known: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK
