import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ember import models


def run_ember(*args, env=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "ember.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


@pytest.fixture
def fresh_env(tmp_path):
    """No EMBER_DATA, an empty HOME, downloads forbidden: what a fresh offline machine sees."""
    env = {k: v for k, v in os.environ.items() if k != "EMBER_DATA"}
    env.update(HOME=str(tmp_path / "home"), EMBER_OFFLINE="1")
    return env


def test_quickstart_offline_on_digits_is_quiet_and_writes_a_run(tmp_path, fresh_env):
    result = run_ember("quickstart", "--set", "train.epochs=2", env=fresh_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings on a normal run
    assert "on dataset digits" in result.stdout and "epoch 2/2" in result.stdout
    run = tmp_path / "runs" / "quickstart"
    assert f"run saved to {Path('runs') / 'quickstart'}" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_samples"] == 359 and metrics["test_accuracy"] > 0.5
    assert models.load_model(run / "model.ember").count_params() == 93322
    again = run_ember("quickstart", "--set", "train.epochs=1", "--quiet", env=fresh_env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "" and (tmp_path / "runs" / "quickstart-2" / "report.md").is_file()


def test_missing_dataset_is_one_line_and_exit_2(tmp_path, fresh_env):
    config = tmp_path / "mnist.yaml"
    config.write_text("task: image_classification\ndata: {dataset: mnist}\n")
    result = run_ember("train", str(config), "--out", str(tmp_path / "out"), env=fresh_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte.gz" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path, fresh_env):
    result = run_ember("--debug", "train", str(tmp_path / "missing.yaml"), env=fresh_env)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_arguments_exit_2():
    assert run_ember("quickstart", "--epochs", "3").returncode == 2
    assert run_ember("frobnicate").returncode == 2
