"""Callbacks with Keras's hook names: `fit(..., callbacks=[EarlyStopping(patience=2)])`.

Hooks receive `logs`, a dict of metric name -> value. Per-batch logs hold 0-d tensors (reading
one with `float()` syncs with the device); per-epoch logs hold floats.
"""
import csv
import math
import os

import numpy as np

from ember.train import distributed, optimizers

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")


class Callback:
    """Base class: override the hooks you need; `self.model` and `self.params` are set by `fit`."""

    state_keys: tuple = ()  # JSON attributes that BackupAndRestore checkpoints, so a resumed run goes on alike
    main_process_only = False  # under torchrun, only rank 0 runs it (callbacks that write files or print)

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params: dict):
        self.params = params

    def get_state(self) -> dict:
        return {key: getattr(self, key) for key in self.state_keys}

    def set_state(self, state: dict) -> None:
        for key in self.state_keys:
            if key in state:
                setattr(self, key, state[key])

    def get_tensors(self) -> dict:
        """Tensors that BackupAndRestore checkpoints beside `get_state()` (EarlyStopping's best weights)."""
        return {}

    def set_tensors(self, tensors: dict) -> None:
        """Take back what `get_tensors` gave, from a checkpoint."""


def _noop(self, *args, **kwargs):
    pass


for _hook in _HOOKS:
    setattr(Callback, _hook, _noop)


class CallbackList:
    """Calls a hook on every callback; knows which hooks anyone overrides so unused ones cost nothing."""

    def __init__(self, callbacks, model, params):
        main = distributed.info().is_main
        self.callbacks = [cb for cb in callbacks if main or not cb.main_process_only]
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def wants(self, hook: str) -> bool:
        return any(getattr(type(cb), hook) is not _noop for cb in self.callbacks)

    def call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)


class History(Callback):
    """Records per-epoch logs: `history.history["loss"]`, `history.epoch`."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _improved(monitor: str, mode: str):
    if mode == "auto":
        higher_is_better = ("acc", "auc", "precision", "recall", "f1", "bleu", "ndcg", "hr@")
        mode = "max" if any(w in monitor for w in higher_is_better) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b), mode


def _monitored(logs, monitor, who):
    if monitor not in (logs or {}):
        available = ", ".join(sorted(logs or {}))
        raise KeyError(f"{who}: monitor {monitor!r} is not in the logs (available: {available})")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stops training when `monitor` stops improving for `patience` epochs.

    >>> EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    """

    state_keys = ("wait", "best", "stopped_epoch")

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, patience, verbose
        self.min_delta, self.baseline, self.start_from_epoch = abs(min_delta), baseline, start_from_epoch
        self.restore_best_weights = restore_best_weights
        self.better, self.mode = _improved(monitor, mode)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_weights = 0, 0, None
        self.best = self.baseline if self.baseline is not None else (math.inf if self.mode == "min" else -math.inf)

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = _monitored(logs, self.monitor, "EarlyStopping")
        delta = -self.min_delta if self.mode == "min" else self.min_delta
        if self.better(current - delta, self.best):
            self.best, self.wait = current, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.load_state_dict(self.best_weights)
                if self.verbose:
                    print(f"Restoring model weights from the end of the best epoch ({self.monitor}={self.best:.4f}).")

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")

    def get_tensors(self) -> dict:
        return dict(self.best_weights or {})

    def set_tensors(self, tensors: dict) -> None:
        if self.restore_best_weights and tensors:
            self.best_weights = dict(tensors)


class ModelCheckpoint(Callback):
    """Saves the model (`.ember`) or its weights (`.safetensors`) after each epoch.

    `filepath` may hold `{epoch}` and log keys: "ckpt/model-{epoch:02d}-{val_loss:.2f}.ember".
    """

    state_keys = ("best",)
    main_process_only = True

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch"):
        super().__init__()
        filepath = os.fspath(filepath)
        expected = ".safetensors" if save_weights_only else ".ember"
        if not filepath.endswith(expected):
            raise ValueError(f"ModelCheckpoint filepath must end in {expected!r}, got {filepath!r}")
        if save_freq != "epoch":
            raise ValueError("ModelCheckpoint supports save_freq='epoch' only")
        self.filepath, self.monitor, self.verbose = filepath, monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.better, self.mode = _improved(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self.better(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)


class CSVLogger(Callback):
    """Writes one CSV row per epoch: epoch and every log value."""

    main_process_only = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer, self.header_written = None, exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            self.writer = csv.DictWriter(self.file, ["epoch", *logs], delimiter=self.separator)
            if not self.header_written:
                self.writer.writeheader()
        self.writer.writerow({"epoch": epoch, **logs})
        self.file.flush()

    def on_train_end(self, logs=None):
        self.file.close()


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` after `patience` epochs without improvement."""

    state_keys = ("wait", "best", "cooldown_counter")

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau factor must be < 1, got {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self.better, self.mode = _improved(monitor, mode)

    def on_train_begin(self, logs=None):
        self.wait, self.cooldown_counter = 0, 0
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = optimizers.get_learning_rate(self.model.optimizer)
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        delta = -self.min_delta if self.mode == "min" else self.min_delta
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.better(current - delta, self.best):
            self.best, self.wait = current, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            old = optimizers.get_learning_rate(self.model.optimizer)
            new = max(old * self.factor, self.min_lr)
            if old - new > np.finfo(np.float32).eps:
                optimizers.set_learning_rate(self.model.optimizer, new)
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new:.4g}.")
            self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Sets the learning rate at each epoch start from `schedule(epoch, lr) -> new_lr`."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, optimizers.get_learning_rate(self.model.optimizer)))
        optimizers.set_learning_rate(self.model.optimizer, lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr:.4g}.")


class StepLearningRateScheduler(Callback):
    """Sets the learning rate before each optimizer step from `schedule(step, lr) -> new_lr`, `step` counting
    from 0 over the whole training (warm-up and decay per step, as Transformers are trained)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule, self.step, self.base_lr = schedule, 0, None

    state_keys = ("step", "base_lr")

    def on_train_begin(self, logs=None):
        self.base_lr = optimizers.get_learning_rate(self.model.optimizer) if self.base_lr is None else self.base_lr

    def on_train_batch_begin(self, batch, logs=None):
        optimizers.set_learning_rate(self.model.optimizer, float(self.schedule(self.step, self.base_lr)))
        self.step += 1



class TerminateOnNaN(Callback):
    """Stops training at the first batch whose loss is NaN or infinite; `stopped_at` is then (epoch, batch),
    both counted from 1."""

    def __init__(self):
        super().__init__()
        self.epoch, self.stopped_at = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.stopped_at = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


def __getattr__(name):  # BackupAndRestore lives with the checkpoints it writes (ember.train.checkpoint)
    if name == "BackupAndRestore":
        from ember.train.checkpoint import BackupAndRestore
        return BackupAndRestore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
