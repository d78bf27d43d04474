"""The benchmark script runs end to end (tiny sizes; timings are never asserted)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_seed_cnn_benchmark_runs():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_cnn.py"), "--rounds", "1", "--steps", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "median ms/step" in result.stdout and "ember / eager" in result.stdout


@pytest.mark.slow
def test_augmentation_benchmark_runs():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "augmentation.py"), "--rounds", "1",
                             "--steps", "3"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ember / plain" in result.stdout and "ember / eager" in result.stdout  # Keras only when installed
    assert "Warning" not in result.stderr, result.stderr


def test_text_benchmark_runs():
    # one thread: on a busy 2-core machine, each of an LSTM's many tiny 2-thread ops waits for a descheduled
    # thread, and 3 steps took 2 minutes instead of 7 seconds
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "text.py"), "--rounds", "1", "--steps", "3"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "median ms/step" in result.stdout and "ember / eager" in result.stdout
    assert "Warning" not in result.stderr, result.stderr


def test_decode_benchmark_runs():
    if not os.environ.get("EMBER_DATA"):
        pytest.skip("needs Multi30k: set EMBER_DATA (CI uses ../shared/data)")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode.py"), "--sentences", "6", "--rounds",
                             "1", "--max-length", "4", "--beam", "2"], capture_output=True, text=True, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert "cached / recomputed" in result.stdout and "identical" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "transformer"])
def test_distributed_benchmark_runs_under_torchrun(model):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(ROOT / "benchmarks" / "distributed.py"), "--model", model, "--rounds", "1",
                             "--steps", "3"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("median ms/step") == 1 and "ember / eager" in result.stdout  # rank 0 alone prints
    assert "Warning" not in result.stderr, result.stderr
