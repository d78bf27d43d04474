"""benchmarks/serve.py runs end to end against real servers (tiny sizes; timings are never asserted)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_benchmark_runs(image_model_file):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serve.py"), "--model", str(image_model_file),
                             "--requests", "40", "--concurrency", "4", "--rounds", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "throughput batching / none" in result.stdout and "errors 0 of 40" in result.stdout
    assert result.stderr == "", result.stderr
