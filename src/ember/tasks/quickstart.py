"""`ember quickstart`: the task runner on its built-in config, offline.

The classic Keras MNIST CNN learns the 8x8 digits that ship with scikit-learn (upsampled to 28x28 so
the very same network applies) and writes a full run directory: metrics, plots, report and model.
"""
from importlib import resources
from pathlib import Path

from ember.tasks import config as config_lib
from ember.tasks import runner

CONFIG = "quickstart.yaml"


def config_path() -> Path:
    return Path(str(resources.files("ember.tasks") / CONFIG))


def run(out=None, *, overrides=(), overwrite=False, quiet=False) -> Path:
    """Train on the built-in config; returns the run directory (default runs/quickstart, or the next free one)."""
    config = config_lib.load_config(config_path(), overrides)
    return runner.train(config_path(), config=config, out=out, overwrite=overwrite, quiet=quiet)
