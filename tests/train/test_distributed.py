"""Data-parallel training under torchrun (gloo on CPU), gradient accumulation, clipping and mixed precision.

The multi-process tests start real processes through torch.distributed.run on 127.0.0.1 and are marked slow.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ember import layers, models, optimizers
from ember.tasks import config as config_lib
from ember.train import distributed
from ember.train.distributed import DistInfo
from ember.train.trainer import _epoch_batches, _steps_per_epoch
from ember.data.arrays import ArrayData

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("ddp_worker.py")
DIGITS = ["train", str(ROOT / "configs" / "digits_cnn.yaml")]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


# -- sharding (no processes) --------------------------------------------------------------------------
def test_shards_cover_the_order_and_are_padded_to_equal_length():
    order = torch.randperm(10)
    shards = [distributed.shard(order, DistInfo(rank, 4)) for rank in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]
    assert sorted(torch.cat(shards).tolist()) == sorted(order.tolist() + order[:2].tolist())
    assert distributed.shard_count(10, DistInfo(0, 4)) == 3


def test_rank_batches_together_make_the_one_process_batch():
    data = ArrayData(np.arange(128, dtype=np.float32).reshape(128, 1), np.arange(128))
    order = torch.randperm(128)
    whole = [y for _, y, _ in data.batches(64, order=order)]
    for rank_batches in zip(*(_epoch_batches(data, 32, order, 0, True, None, False, DistInfo(rank, 2))
                              for rank in range(2))):
        step = torch.cat([y for _, y, _ in rank_batches])
        assert sorted(step.tolist()) == sorted(whole.pop(0).tolist())
    assert not whole
    assert _steps_per_epoch(data, 32, DistInfo(1, 2)) == 2


def test_self_batching_data_gives_each_rank_every_world_size_th_batch():
    class Planned(ArrayData):
        def batches(self, batch_size, **kwargs):
            for first in range(0, len(self), batch_size):
                yield (self.xs[0][first:first + batch_size],), None, None
    data = Planned(np.arange(50, dtype=np.float32).reshape(50, 1))  # 5 batches of 10: 2 per rank, 1 left out
    firsts = [[float(x[0][0]) for x, _, _ in _epoch_batches(data, 10, None, 0, False, None, False, DistInfo(r, 2))]
              for r in range(2)]
    assert firsts == [[0.0, 20.0], [10.0, 30.0]]
    assert _steps_per_epoch(data, 10, DistInfo(0, 2)) == 2


# -- accumulation, clipping, precision (one process) --------------------------------------------------
def _mlp(optimizer, precision="fp32"):
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(8,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  precision=precision)
    return model


def _blobs(n=256):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    return (rng.normal(size=(n, 8)) + y[:, None]).astype("float32"), y


def test_accumulating_two_batches_of_32_steps_like_one_batch_of_64():
    x, y = _blobs()
    weights = []
    for batch_size, spec in ((64, optimizers.SGD(0.1)),
                             (32, optimizers.SGD(0.1, gradient_accumulation_steps=2))):
        torch.manual_seed(0)
        model = _mlp(spec)
        model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_global_clipnorm_bounds_each_step():
    x, y = _blobs(64)
    model = _mlp(optimizers.SGD(1.0, global_clipnorm=0.01))
    model.build((None, 8))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert 0 < float((after - before).norm()) <= 0.01 + 1e-6


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision):
    x, y = _blobs()
    model = _mlp(optimizers.Adam(0.01), precision)
    history = model.fit(x, y, epochs=8, verbose=0)
    assert (model._scaler is not None) == (precision == "fp16")
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32


def test_config_precision_names_and_checkpoint_spacing():
    def train_section(**values):
        return config_lib.Train.model_validate(values).model_dump()
    assert train_section(precision="bf16-mixed")["precision"] == "bf16"
    assert train_section(precision=32)["precision"] == "fp32"
    assert train_section(precision="16-mixed")["precision"] == "fp16"
    with pytest.raises(ValueError, match="multiple of train.gradient_accumulation_steps"):
        train_section(checkpoint_every=5, gradient_accumulation_steps=2)
    with pytest.raises(ValueError, match="device"):
        train_section(device="tpu")


def test_shards_outside_torchrun_are_the_single_process():
    assert distributed.info() == DistInfo(0, 1, 0)
    assert distributed.setup(torch.device("cpu")) == DistInfo(0, 1, 0)


# -- several processes (torchrun) -----------------------------------------------------------------------
def _torchrun(nproc, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), *args], capture_output=True, text=True, env=_env(), **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size, accumulate", [(32, 1), (16, 2)])
def test_two_processes_of_32_end_with_the_weights_of_one_process_of_64(tmp_path, batch_size, accumulate):
    """2 x 32 per step, or 2 x 2 accumulated batches of 16 (the gradients exchanged once per step)."""
    one = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one.st"), "64", "3"], capture_output=True,
                         text=True, env=_env())
    two = _torchrun(2, str(WORKER), str(tmp_path / "two.st"), str(batch_size), "3", f"accumulate={accumulate}")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    a, b = load_file(tmp_path / "one.st"), load_file(tmp_path / "two.st")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    # the logged metrics are summed over the ranks: the same numbers as the one-process run
    assert one.stdout.splitlines()[-1] == two.stdout.splitlines()[-1]


def _ember(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "ember", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), **kwargs)


@pytest.mark.slow
def test_ember_train_on_two_nodes_on_loopback_matches_two_local_processes(tmp_path):
    settings = ["--set", "train.epochs=2", "--set", "output.plots=false"]
    local = _ember(*DIGITS, "--nproc-per-node", "2", "--out", str(tmp_path / "local"), *settings)
    _, stderr = local.communicate(timeout=300)
    assert local.returncode == 0, stderr
    port = str(29400 + os.getpid() % 500)
    nodes = [_ember(*DIGITS, "--nnodes", "2", "--node-rank", str(rank), "--master-addr", "127.0.0.1",
                    "--master-port", port, "--out", str(tmp_path / "nodes"), *settings) for rank in (1, 0)]
    outputs = [(*node.communicate(timeout=300), node.returncode) for node in nodes]
    assert [code for _, _, code in outputs] == [0, 0], outputs
    assert "on 2 processes" in outputs[1][0] and "node 1: done" in outputs[0][0]
    assert [stderr for _, stderr, _ in outputs] == ["", ""]  # no warnings, no agent logs
    assert not (tmp_path / "nodes").with_name(".nodes.backup").exists()
    assert (tmp_path / "nodes" / "metrics.json").read_text() == (tmp_path / "local" / "metrics.json").read_text()
    assert (tmp_path / "nodes" / "metrics.jsonl").read_text().count("\n") == 2


@pytest.mark.slow
def test_killing_one_rank_stops_the_other_with_a_clear_error(tmp_path):
    run = _ember(*DIGITS, "--nproc-per-node", "2", "--out", str(tmp_path / "run"), "--set", "train.epochs=500",
                 "--set", "callbacks.early_stopping=null", start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".run.backup/ckpt-*.ember")):  # training is under way
            assert time.monotonic() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-f", "--", f"-u -m ember train .*{tmp_path / 'run'}"],
                                 capture_output=True, text=True).stdout.split()
        assert len(workers) == 2
        killed = time.monotonic()
        os.kill(int(max(workers, key=int)), signal.SIGKILL)
        _, stderr = run.communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
    assert run.returncode == 2
    assert "was killed by SIGKILL" in stderr
    assert all(line.startswith("ember train: error: rank ") for line in stderr.splitlines()), stderr
    assert not (tmp_path / "run").exists()  # no half-written run directory
