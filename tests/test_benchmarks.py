"""The benchmark script runs end to end (tiny sizes; timings are never asserted)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_seed_cnn_benchmark_runs():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed_cnn.py"), "--rounds", "1", "--steps", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "median ms/step" in result.stdout and "ember / eager" in result.stdout
