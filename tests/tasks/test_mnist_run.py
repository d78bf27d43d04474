"""Acceptance: `ember train configs/mnist_cnn.yaml` writes a whole run with test accuracy >= 0.99."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember.tasks import runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.data
def test_mnist_config_reaches_99_percent_and_evaluate_reproduces_it(tmp_path, ember_data):
    env = {**os.environ, "EMBER_DATA": str(ember_data), "EMBER_OFFLINE": "1"}
    run = tmp_path / "mnist"
    train = subprocess.run([sys.executable, "-m", "ember.cli", "train", str(ROOT / "configs" / "mnist_cnn.yaml"),
                            "--out", str(run)], capture_output=True, text=True, env=env, timeout=1200)
    assert train.returncode == 0 and train.stderr == "", train.stderr
    print(train.stdout)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.99 and metrics["test_samples"] == 10000
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    for name in ("plots/learning_curves.png", "plots/confusion_matrix.png", "plots/highest_loss.png", "report.md",
                 "model.ember", "checkpoints/last.ember", "config.yaml"):
        assert (run / name).is_file(), name
    evaluated = subprocess.run([sys.executable, "-m", "ember.cli", "evaluate", str(run), "--json"],
                               capture_output=True, text=True, env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    assert runner.compare(json.loads(evaluated.stdout), run / "metrics.json") <= 1e-6
