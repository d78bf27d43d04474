"""The loops behind `Model.fit`, `evaluate` and `predict`: epochs -> batches -> step -> callbacks.

The model supplies `train_step`, `test_step` and `predict_step` (the seams to override) and its
compiled metrics; these functions only iterate, report and call back.
"""

import numpy as np
import torch

from ember.data.arrays import ArrayData
from ember.train.callbacks import CallbackList, History
from ember.train.progress import Progbar


def _verbosity(verbose) -> int:
    return 1 if verbose == "auto" else int(verbose)


def _validation_data(validation_data) -> ArrayData:
    if isinstance(validation_data, ArrayData):
        return validation_data
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight)")
    return ArrayData(*validation_data)


def _split_data(data, validation_split, validation_data):
    if validation_data is not None:
        return data, _validation_data(validation_data)
    if validation_split:
        return data.split(validation_split)
    return data, None


def fit(model, data: ArrayData, *, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, initial_epoch=0, validation_batch_size=None, validation_freq=1):
    """Train `model` on `data`; see `Model.fit` for the arguments. Returns the History callback."""
    verbose = _verbosity(verbose)
    train, val = _split_data(data, validation_split, validation_data)
    if len(train) == 0:
        raise ValueError("fit() got no training samples")
    device = model.device
    train = train.to(device) if device.type != "cpu" else train
    steps = train.num_batches(batch_size)
    history = History()
    # a backup callback goes first: its checkpoint at a batch's start must precede what others do there
    callbacks = sorted([*(callbacks or []), history], key=lambda c: not hasattr(c, "restore_training"))
    backup = callbacks[0] if hasattr(callbacks[0], "restore_training") else None
    callbacks = CallbackList(callbacks, model, {"epochs": epochs, "steps": steps, "verbose": verbose})
    wants_batch_logs = callbacks.wants("on_train_batch_end")
    trim = model.ignores_padding_length()
    model.stop_training = False
    callbacks.call("on_train_begin", {})
    resume = backup.restore_training(callbacks.callbacks[1:]) if backup else None
    first_epoch, first_step = (resume["epoch"], resume["step"]) if resume else (initial_epoch, 0)
    logs = {}
    for epoch in range(first_epoch, epochs):
        model.reset_metrics()
        callbacks.call("on_epoch_begin", epoch, {})
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}", flush=True)
        bar = Progbar(steps, verbose)
        model.train()
        start = first_step if epoch == first_epoch else 0
        # data with an explicit sample order (in-memory arrays) resumes mid-epoch exactly; other data
        # (token-grouped, sampled per epoch) draws its order itself and is checkpointed at epoch ends
        exact = hasattr(train, "epoch_order")
        order = (resume["order"] if resume and start else train.epoch_order(shuffle)) if exact else None
        model._epoch_order, model._exact_order = order, exact  # for checkpoints taken during the epoch
        batches = train.batches(batch_size, shuffle=shuffle, order=order, start=start, device=device, trim=trim)
        for step, (xs, y, weight) in enumerate(batches, start=start):
            callbacks.call("on_train_batch_begin", step, {})
            model.train_step(xs, y, weight)
            if wants_batch_logs:
                callbacks.call("on_train_batch_end", step, model.metric_results())
            bar.update(step + 1, model.metric_logs)
            if model.stop_training:
                break
        logs = model.metric_logs()
        if val is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
            val_logs = evaluate(model, val, batch_size=validation_batch_size or batch_size, verbose=0)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callbacks.call("on_epoch_end", epoch, logs)
        bar.finish(step + 1, logs)
        if model.stop_training:
            break
    model.eval()
    callbacks.call("on_train_end", logs)
    return history


@torch.inference_mode()
def evaluate(model, data: ArrayData, *, batch_size=32, verbose="auto", callbacks=None) -> dict:
    """Loss and metrics of `model` on `data` as a dict of floats, metrics reset first."""
    verbose = _verbosity(verbose)
    callbacks = CallbackList(callbacks or [], model, {"verbose": verbose})
    model.reset_metrics()
    model.eval()
    steps = data.num_batches(batch_size)
    bar = Progbar(steps, verbose)
    callbacks.call("on_test_begin", {})
    batches = data.batches(batch_size, device=model.device, trim=model.ignores_padding_length())
    for step, (xs, y, weight) in enumerate(batches):
        callbacks.call("on_test_batch_begin", step, {})
        model.test_step(xs, y, weight)
        callbacks.call("on_test_batch_end", step, {})
        bar.update(step + 1, model.metric_logs)
    logs = model.metric_logs()
    callbacks.call("on_test_end", logs)
    bar.finish(steps, logs)
    return logs


@torch.inference_mode()
def predict(model, data: ArrayData, *, batch_size=32, verbose="auto", callbacks=None) -> np.ndarray:
    """Model outputs for every sample, concatenated into one NumPy array (a tuple for several outputs)."""
    verbose = _verbosity(verbose)
    callbacks = CallbackList(callbacks or [], model, {"verbose": verbose})
    model.eval()
    steps = data.num_batches(batch_size)
    bar = Progbar(steps, verbose)
    callbacks.call("on_predict_begin", {})
    outputs = []
    batches = data.batches(batch_size, device=model.device, trim=model.ignores_padding_length())
    for step, (xs, _, _) in enumerate(batches):
        callbacks.call("on_predict_batch_begin", step, {})
        outputs.append(model.predict_step(xs))
        callbacks.call("on_predict_batch_end", step, {})
        bar.update(step + 1, dict)
    callbacks.call("on_predict_end", {})
    bar.finish(steps, {})
    if outputs and isinstance(outputs[0], (tuple, list)):
        return tuple(torch.cat(parts).cpu().numpy() for parts in zip(*outputs))
    return torch.cat(outputs).cpu().numpy() if outputs else np.empty((0,))
