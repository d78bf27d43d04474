import json
import os
import subprocess
import sys

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


def test_quickstart_offline_on_digits_is_quiet_and_saves(tmp_path, fresh_env):
    result = run_ember("quickstart", "--epochs", "2", "--out", str(tmp_path / "out"), env=fresh_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings on a normal run
    assert "on digits" in result.stdout and "Epoch 2/2" in result.stdout and "saved the model to" in result.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["test_accuracy"] > 0.5
    assert models.load_model(tmp_path / "out" / "model.ember").count_params() == 93322


def test_missing_dataset_is_one_line_and_exit_2(tmp_path, fresh_env):
    result = run_ember("quickstart", "--dataset", "mnist", "--out", str(tmp_path / "out"), env=fresh_env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte.gz" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model.ember").exists()


def test_debug_shows_the_traceback(tmp_path, fresh_env):
    result = run_ember("--debug", "quickstart", "--dataset", "mnist", "--out", str(tmp_path / "out"), env=fresh_env)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_arguments_exit_2():
    assert run_ember("quickstart", "--dataset", "cifar").returncode == 2
    assert run_ember("frobnicate").returncode == 2
