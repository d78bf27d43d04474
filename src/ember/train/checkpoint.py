"""Training checkpoints that resume exactly where a run stopped, and the `BackupAndRestore` callback.

A checkpoint is one `.ember` file: the model file (architecture, weights, optimizer state) plus
`training/state.json` (epoch, step, the Python and NumPy random states, callback states) and
`training/state.safetensors` (torch's random state and the epoch's sample order). It is written
atomically (temporary file, fsync, rename): a kill at any moment leaves the previous checkpoint whole.
Resuming restores all of it, skips the batches the epoch already trained on, and so continues with the
very batches, dropout masks and optimizer steps the uninterrupted run would have taken.
"""
import collections
import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ember.errors import ModelFileError
from ember.models.saving import restore_checkpoint, save_model
from ember.train import distributed
from ember.train.callbacks import Callback

STATE_JSON, STATE_TENSORS = "training/state.json", "training/state.safetensors"
_NAME = re.compile(r"ckpt-(\d+)\.ember$")
_CALLBACK = "callback."  # then the callback's class name, "/" and its tensor's name


def random_states() -> tuple[dict, dict]:
    """(JSON, tensors) of every random generator a training step draws from."""
    version, state, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    tensors = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda_rng.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return ({"python": [version, list(state), gauss],
             "numpy": [kind, keys.tolist(), position, has_gauss, cached]}, tensors)


def set_random_states(saved: dict, tensors: dict) -> None:
    version, state, gauss = saved["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, position, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["torch_rng"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda_rng.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(model, path, *, epoch: int, step: int, order: torch.Tensor | None, callbacks: dict,
                    callback_tensors: dict | None = None) -> None:
    """Write a checkpoint of `model` after `step` batches of epoch `epoch` (0-based) whose samples come in
    `order`; `callbacks` maps the callbacks' names (`callback_keys`) to their `get_state()`, `callback_tensors`
    to their `get_tensors()`."""
    saved, tensors = random_states()
    if order is not None:
        tensors["order"] = order.cpu()
    for name, found in (callback_tensors or {}).items():
        tensors.update({f"{_CALLBACK}{name}/{key}": value.detach().cpu() for key, value in found.items()})
    state = {"epoch": epoch, "step": step, "random": saved, "callbacks": callbacks,
             "world_size": distributed.info().world_size}
    save_model(model, path, extra={STATE_JSON: json.dumps(state).encode(),
                                   STATE_TENSORS: save_tensors({k: v.contiguous() for k, v in tensors.items()})})


def load_checkpoint(model, path) -> dict:
    """Restore the weights, optimizer and random states of checkpoint `path` into the compiled `model`;
    returns {"epoch", "step", "order", "callbacks", "callback_tensors"}."""
    entries = restore_checkpoint(model, path, (STATE_JSON, STATE_TENSORS))
    if STATE_JSON not in entries or STATE_TENSORS not in entries:
        raise ModelFileError(f"{path}: a model file, not a training checkpoint (no {STATE_JSON})")
    try:
        state = json.loads(entries[STATE_JSON])
        tensors = load_tensors(entries[STATE_TENSORS])
        set_random_states(state["random"], tensors)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise ModelFileError(f"{path}: training state is unreadable ({e})") from None
    world = distributed.info().world_size
    if state["step"] and state.get("world_size", 1) != world:  # its step counts batches of that many ranks
        raise ModelFileError(f"{path}: taken mid-epoch by a run of {state.get('world_size', 1)} processes; resume "
                             f"it with as many (this run has {world})")
    callback_tensors: dict = {}
    for key, value in tensors.items():
        if key.startswith(_CALLBACK):
            name, _, inner = key[len(_CALLBACK):].partition("/")
            callback_tensors.setdefault(name, {})[inner] = value
    return {"epoch": state["epoch"], "step": state["step"], "order": tensors.get("order"),
            "callbacks": state.get("callbacks", {}), "callback_tensors": callback_tensors}


def _finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def callback_keys(callbacks) -> list[str]:
    """Each callback's name in a checkpoint: its class name, with "#2", "#3"... for further ones of a class."""
    seen: collections.Counter = collections.Counter()
    keys = []
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] += 1
        keys.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return keys


def checkpoints_in(folder) -> list[Path]:
    """The checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt-*.ember") if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


class BackupAndRestore(Callback):
    """Checkpoints training into `backup_dir` and resumes from the newest checkpoint there when `fit` is
    called again (after a crash, a kill or a preemption), mid-epoch included.

    `save_freq`: "epoch" or a number of batches. `keep`: how many checkpoints stay (the newest).
    `delete_checkpoint`: remove them once training ends normally.

    >>> model.fit(x, y, epochs=10, callbacks=[callbacks.BackupAndRestore("backup", save_freq=500)])
    """

    def __init__(self, backup_dir, save_freq="epoch", keep: int = 1, delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.backup_dir, self.save_freq, self.keep = Path(backup_dir), save_freq, keep
        self.delete_checkpoint = delete_checkpoint
        self._saved = 0          # the newest checkpoint's number
        self.others: list = []   # the other callbacks, whose state travels in the checkpoint
        self._epoch, self._resumed_at = 0, None

    def restore_training(self, others: list) -> dict | None:
        """Called by `fit` once every callback has begun: restore the newest checkpoint into the model and
        into `others` (the other callbacks), and say where to go on: {"epoch", "step", "order"}, or None
        when there is none."""
        self.others = others
        try:
            self.backup_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"{self.backup_dir}: cannot create the backup folder ({e.strerror})") from None
        found = checkpoints_in(self.backup_dir)
        if not found:
            return None
        self._saved = int(_NAME.search(found[-1].name).group(1))
        resume = load_checkpoint(self.model, found[-1])
        for key, callback in zip(callback_keys(others), others):
            state = resume["callbacks"].get(key)
            if state is not None:
                callback.set_state(state)
            callback.set_tensors(resume["callback_tensors"].get(key, {}))
        self._resumed_at = (resume["epoch"], resume["step"])
        return resume

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.save_freq == "epoch" or not batch or batch % self.save_freq:
            return
        if self.model._exact_order and (self._epoch, batch) != self._resumed_at:  # that one is on disk already
            self._save(self._epoch, self.model._epoch_order, step=batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch" or not self.model._exact_order:  # see fit: such data resumes by epochs
            self._save(epoch + 1, None, step=0)

    def on_train_end(self, logs=None):
        if not distributed.info().is_main:
            return
        if self.delete_checkpoint and _finite(self.model):  # after a divergence the last good one stays
            for path in checkpoints_in(self.backup_dir):
                path.unlink(missing_ok=True)

    def _save(self, epoch: int, order, step: int) -> None:
        # rank 0 alone writes (under torchrun every rank holds the same weights); a diverged run keeps the
        # last good checkpoint as it is
        if not distributed.info().is_main or not _finite(self.model):
            return
        self._saved += 1
        keys = callback_keys(self.others)
        states = {key: c.get_state() for key, c in zip(keys, self.others) if c.state_keys}
        tensors = {key: found for key, c in zip(keys, self.others) if (found := c.get_tensors())}
        save_checkpoint(self.model, self.backup_dir / f"ckpt-{self._saved:06d}.ember", epoch=epoch, step=step,
                        order=order, callbacks=states, callback_tensors=tensors)
        for old in checkpoints_in(self.backup_dir)[:-self.keep]:
            old.unlink(missing_ok=True)
        for stale in self.backup_dir.glob(".tmp-*"):  # left by a kill in the middle of a write
            stale.unlink(missing_ok=True)
