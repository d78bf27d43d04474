"""BackupAndRestore: a run interrupted anywhere and resumed ends with exactly the uninterrupted weights."""
import numpy as np
import pytest
import torch

import ember
from ember import callbacks, datasets, layers, models
from ember.errors import ModelFileError
from ember.train.checkpoint import checkpoints_in, load_checkpoint


class Crash(Exception):
    pass


class CrashAt(callbacks.Callback):
    """Raises at the start of batch `batch` of epoch `epoch`, as a kill would stop the run there."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Crash(self.at)


def digits():
    (x, y), _ = datasets.digits.load_data()
    return (x[:512, ..., None] / 16).astype(np.float32), y[:512]


def fresh_model(seed):
    ember.set_random_seed(seed)
    model = models.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(8, 3, activation="relu"),
                               layers.BatchNormalization(), layers.Flatten(), layers.Dropout(0.3),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(backup_dir, seed=0, crash=None, extra=()):
    x, y = digits()
    model = fresh_model(seed)
    more = [CrashAt(*crash)] if crash else []
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, validation_split=0.125,
              callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=5, keep=2), *more, *extra])
    return model


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_interrupted_runs_resume_to_bitwise_identical_weights(tmp_path):
    straight = weights(train(tmp_path / "a"))
    for seed, crash in [(0, (0, 12)), (99, (1, 3)), (7, (2, 11))]:
        with pytest.raises(Crash):  # resumed runs start from other seeds: the checkpoint must restore it all
            train(tmp_path / "b", seed=seed, crash=crash)
        assert len(checkpoints_in(tmp_path / "b")) <= 2
    resumed = weights(train(tmp_path / "b", seed=123))
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name
    assert checkpoints_in(tmp_path / "b") == []  # deleted once training ended


def test_schedules_and_plateau_state_survive_a_resume(tmp_path):
    def made():
        return [callbacks.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5),
                callbacks.StepLearningRateScheduler(lambda step, lr: lr * 0.99 ** step)]

    straight = weights(train(tmp_path / "a", extra=made()))
    with pytest.raises(Crash):
        train(tmp_path / "b", crash=(2, 6), extra=made())
    resumed = weights(train(tmp_path / "b", seed=5, extra=made()))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_early_stoppings_best_weights_survive_a_resume(tmp_path):
    def made():  # "max" on a falling loss: epoch 0 stays the best, epoch 1 stops and restores its weights
        return [callbacks.EarlyStopping(monitor="loss", mode="max", patience=1, restore_best_weights=True)]

    straight = weights(train(tmp_path / "a", extra=made()))
    with pytest.raises(Crash):
        train(tmp_path / "b", crash=(1, 8), extra=made())  # checkpointed at (1, 5), after epoch 0 kept its weights
    resumed = weights(train(tmp_path / "b", seed=5, extra=made()))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_two_callbacks_of_one_class_keep_their_own_state(tmp_path):
    def stoppers(waits):
        made = [callbacks.EarlyStopping(monitor="loss"), callbacks.EarlyStopping(monitor="val_loss")]
        for stopper, wait in zip(made, waits):
            stopper.on_train_begin()
            stopper.wait = wait
        return made

    backup = callbacks.BackupAndRestore(tmp_path)
    backup.set_model(fresh_model(0))
    backup.others = stoppers([3, 1])
    backup._save(1, None, step=0)
    again = callbacks.BackupAndRestore(tmp_path)
    again.set_model(fresh_model(1))
    resumed = stoppers([0, 0])
    again.restore_training(resumed)
    assert [s.wait for s in resumed] == [3, 1]


def test_a_model_file_is_not_a_checkpoint(tmp_path):
    model = fresh_model(0)
    model.save(tmp_path / "m.ember")
    with pytest.raises(ModelFileError, match="not a training checkpoint"):
        load_checkpoint(model, tmp_path / "m.ember")


def test_bad_arguments():
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore("x", save_freq=0)
