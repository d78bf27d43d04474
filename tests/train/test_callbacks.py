import csv

import numpy as np
import pytest
import torch

from ember import callbacks, models, optimizers
from tests.models.test_sequential import blobs, mlp


def compiled(lr=0.01):
    model = mlp()
    model.compile(optimizers.Adam(learning_rate=lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class ScriptedLoss(callbacks.Callback):
    """Overwrites the epoch's val_loss with a scripted sequence, to drive monitors deterministically."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def test_early_stopping_restores_best_weights():
    x, y = blobs(64)
    model = compiled()
    snapshots = []

    class Snapshot(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})

    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=10, validation_split=0.25, verbose=0,
                        callbacks=[ScriptedLoss([3, 1, 2, 2, 0.5, 0.1]), Snapshot(), stop])
    assert len(history.epoch) == 4 and stop.stopped_epoch == 3
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][key])


def test_early_stopping_names_a_missing_monitor():
    x, y = blobs(32)
    with pytest.raises(KeyError, match="'val_loss' is not in the logs"):
        compiled().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.EarlyStopping()])


def test_model_checkpoint_best_only(tmp_path):
    x, y = blobs(64)
    path = str(tmp_path / "ckpt-{epoch:02d}.ember")
    checkpoint = callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    compiled().fit(x, y, epochs=4, validation_split=0.25, verbose=0,
                   callbacks=[ScriptedLoss([2, 1, 3, 0.5]), checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-01.ember", "ckpt-02.ember", "ckpt-04.ember"]
    assert models.load_model(tmp_path / "ckpt-04.ember").count_params() == mlp().count_params()


def test_model_checkpoint_weights_only(tmp_path):
    x, y = blobs(32)
    compiled().fit(x, y, epochs=1, verbose=0,
                   callbacks=[callbacks.ModelCheckpoint(tmp_path / "w.safetensors", save_weights_only=True)])
    assert (tmp_path / "w.safetensors").stat().st_size > 0
    with pytest.raises(ValueError, match="must end in '.ember'"):
        callbacks.ModelCheckpoint(tmp_path / "w.h5")


def test_csv_logger(tmp_path):
    x, y = blobs(32)
    compiled().fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.CSVLogger(tmp_path / "log.csv")])
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and {"loss", "accuracy"} <= rows[0].keys()


def test_reduce_lr_on_plateau_and_scheduler():
    x, y = blobs(32)
    model = compiled(lr=0.1)
    history = model.fit(x, y, epochs=4, validation_split=0.25, verbose=0, callbacks=[
        ScriptedLoss([1, 1, 1, 1]), callbacks.ReduceLROnPlateau(factor=0.5, patience=1)])
    assert optimizers.get_learning_rate(model.optimizer) == pytest.approx(0.1 * 0.5 ** 3)
    assert history.history["learning_rate"][0] == pytest.approx(0.1)
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 * (epoch + 1))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[scheduler])
    assert optimizers.get_learning_rate(model.optimizer) == pytest.approx(0.03)


def test_terminate_on_nan():
    x, y = blobs(64)
    x[40:] = np.nan
    model = compiled()
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.epoch) == 1
