"""`ember train --resume`: a run killed with SIGKILL at random points and resumed each time ends with the
weights of a run that was never interrupted, bit for bit."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_tensors

from ember.tasks.runner import backup_dir_of
from ember.train.checkpoint import checkpoints_in

ROOT = Path(__file__).resolve().parents[2]
# two epochs of the shipped digits config (dropout, a warm-up and cosine schedule), a resumable checkpoint every
# 5 batches, deterministic algorithms
SETTINGS = ["--set", "train.epochs=2", "--set", "train.checkpoint_every=5", "--set", "train.deterministic=true",
            "--set", "callbacks.early_stopping=null",
            "--set", "output.plots=false", "--quiet"]


def ember_train(out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "ember.cli", "train", str(ROOT / "configs" / "digits_cnn.yaml"), "--out",
               str(out), *SETTINGS, *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def weights(run: Path) -> dict:
    import zipfile
    with zipfile.ZipFile(run / "model.ember") as archive:
        return load_tensors(archive.read("model.safetensors"))


def kill_at_checkpoint(process: subprocess.Popen, folder: Path, number: int, rng) -> None:
    """SIGKILL `process` a random few milliseconds after it writes checkpoint `number` (of about 16: one every
    5 of the 2 x 41 batches), so that the kill lands mid-step, with training still left to do."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(int(p.stem.split("-")[1]) >= number for p in (checkpoints_in(folder) if folder.is_dir() else [])):
            time.sleep(rng.uniform(0.0, 0.02))
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
            return
        time.sleep(0.002)
    raise AssertionError(f"the run ended before checkpoint {number}: {process.stderr.read()}")


@pytest.mark.slow
def test_three_sigkills_then_resume_give_bitwise_identical_weights(tmp_path):
    straight = ember_train(tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    straight.stderr.close()
    rng = random.Random(int(os.environ.get("EMBER_KILL_SEED", "0")))
    run = tmp_path / "killed"
    for attempt, number in enumerate(sorted(rng.sample(range(2, 13), 3))):  # 3 random points of the 2 epochs
        process = ember_train(run, *(["--resume"] if attempt else []))
        kill_at_checkpoint(process, backup_dir_of(run), number, rng)
        assert process.returncode == -signal.SIGKILL
        assert not run.exists()  # killed runs leave no run directory, only what --resume needs
    finished = ember_train(run, "--resume")
    assert finished.wait(timeout=300) == 0, finished.stderr.read()
    finished.stderr.close()
    expected, actual = weights(tmp_path / "straight"), weights(run)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert not backup_dir_of(run).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no stale staging folders
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # both epochs, though three processes trained them


def test_resume_without_checkpoints_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ember.cli", "train", str(ROOT / "configs" / "digits_cnn.yaml"),
                             "--out", str(tmp_path / "run"), "--resume", "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "nothing to resume" in result.stderr and result.stderr.count("\n") == 1


def test_a_diverging_run_names_the_batch_and_keeps_the_last_good_checkpoint(tmp_path):
    from ember.errors import EmberError
    from ember.tasks import runner
    run = tmp_path / "run"
    overrides = ["train.optimizer=sgd", "train.lr=1e30", "train.checkpoint_every=1", "callbacks.early_stopping=null"]
    with pytest.raises(EmberError, match=r"diverged: the loss became \S+ at epoch 1, batch \d+.*last good checkpoint"):
        runner.train(ROOT / "configs" / "digits_cnn.yaml", overrides=overrides, out=run, quiet=True)
    kept = checkpoints_in(backup_dir_of(run))
    assert kept and not run.exists()
    import zipfile
    with zipfile.ZipFile(kept[-1]) as archive:
        assert all(torch.isfinite(t).all() for t in load_tensors(archive.read("model.safetensors")).values())
