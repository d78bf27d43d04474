"""The loops behind `Model.fit`, `evaluate` and `predict`: epochs -> batches -> step -> callbacks.

The model supplies `train_step`, `test_step` and `predict_step` (the seams to override) and its
compiled metrics; these functions only iterate, report and call back.
"""

import itertools

import numpy as np
import torch

from ember.data.arrays import ArrayData
from ember.layers.base import inference_pass
from ember.train import distributed
from ember.train.callbacks import CallbackList, History
from ember.train.progress import Progbar


def _verbosity(verbose) -> int:
    """Keras's verbose argument as 0, 1 or 2; 0 on all but rank 0 under torchrun (rank 0 speaks for the run)."""
    return (1 if verbose == "auto" else int(verbose)) if distributed.info().is_main else 0


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


def _steps_per_epoch(train, batch_size: int, here) -> int:
    if not here.is_distributed:
        return train.num_batches(batch_size)
    if hasattr(train, "epoch_order") and type(train).batches is ArrayData.batches:
        return -(-distributed.shard_count(len(train), here) // batch_size)
    return train.num_batches(batch_size) // here.world_size  # see _epoch_batches


def _epoch_batches(train, batch_size, order, start, shuffle, device, trim, here):
    """This process's batches of the epoch: all of them, or its shard of `order` under torchrun. Data that
    plans its own batches (token-grouped, sampled per epoch) gives each rank every world_size-th batch of
    its plan, the same plan on every rank when the data is seeded; the last few batches that do not fill
    a round over the ranks are left out, so every rank takes as many steps."""
    if not here.is_distributed:
        return train.batches(batch_size, shuffle=shuffle, order=order, start=start, device=device, trim=trim)
    if order is not None and type(train).batches is ArrayData.batches:
        return train.batches(batch_size, order=distributed.shard(order, here), start=start, device=device,
                             trim=trim)
    whole = train.batches(batch_size, shuffle=shuffle, start=0, device=device, trim=trim)
    steps = train.num_batches(batch_size) // here.world_size
    return itertools.islice(whole, here.rank + start * here.world_size, steps * here.world_size, here.world_size)


def _epoch_order(model, train, shuffle, resumed_order, here):
    """The epoch's sample order, kept on the model for checkpoints taken during the epoch. Data with an
    explicit order (in-memory arrays) resumes mid-epoch exactly (`resumed_order`); other data (token-grouped,
    sampled per epoch) draws its order itself and is checkpointed at epoch ends (None)."""
    exact = hasattr(train, "epoch_order")
    order = (resumed_order if resumed_order is not None else train.epoch_order(shuffle)) if exact else None
    if exact and here.is_distributed:
        order = distributed.epoch_order(order, len(train), here)  # rank 0's, on every rank
    model._epoch_order, model._exact_order = order, exact
    return order


def _train_batches(model, batches, start, steps, callbacks, bar, here) -> int:
    """A training step on each of the epoch's `batches` (numbered from `start`) with its callbacks and
    progress, until they run out or the model stops training; returns the number of steps then done."""
    accumulate = model.accumulation_steps
    wants_batch_logs = callbacks.wants("on_train_batch_end")
    done = start
    for step, (xs, y, weight) in enumerate(batches, start=start):
        callbacks.call("on_train_batch_begin", step, {})
        if accumulate > 1:
            model._step_ends = (step + 1) % accumulate == 0 or step + 1 == steps
        model.train_step(xs, y, weight)
        if wants_batch_logs:
            callbacks.call("on_train_batch_end", step, model.metric_results())
            if here.is_distributed:  # a rank that stops (say, on a NaN) stops them all
                model.stop_training = distributed.any_rank(model.stop_training)
        done = step + 1
        bar.update(done, model.metric_logs)
        if model.stop_training:
            break
    return done


def fit(model, data: ArrayData, *, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, initial_epoch=0, validation_batch_size=None, validation_freq=1):
    """Train `model` on `data`; see `Model.fit` for the arguments. Returns the History callback.

    Under torchrun each process trains on its shard of every epoch (`ember.train.distributed`)."""
    here = distributed.info()
    verbose = _verbosity(verbose)
    train, val = _split_data(data, validation_split, validation_data)
    if len(train) == 0:
        raise ValueError("fit() got no training samples")
    device = model.device
    train = train.to(device) if device.type != "cpu" else train
    steps = _steps_per_epoch(train, batch_size, here)
    if steps == 0:
        raise ValueError(f"fit() has no batch for each of the {here.world_size} processes: "
                         f"{len(train)} training samples")
    history = History()
    # a backup callback goes first: its checkpoint at a batch's start must precede what others do there
    callbacks = sorted([*(callbacks or []), history], key=lambda c: not hasattr(c, "restore_training"))
    backup = callbacks[0] if hasattr(callbacks[0], "restore_training") else None
    callbacks = CallbackList(callbacks, model, {"epochs": epochs, "steps": steps, "verbose": verbose})
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
        order = _epoch_order(model, train, shuffle, resume["order"] if resume and start else None, here)
        batches = _epoch_batches(train, batch_size, order, start, shuffle, device, trim, here)
        done = _train_batches(model, batches, start, steps, callbacks, bar, here)
        if here.is_distributed:
            distributed.sum_metrics([model.loss_tracker, *model.compiled_metrics])
        logs = model.metric_logs()
        if val is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
            val_logs = evaluate(model, val, batch_size=validation_batch_size or batch_size, verbose=0,
                                sharded=here.is_distributed)
            logs.update({f"val_{k}": v for k, v in val_logs.items()})
        callbacks.call("on_epoch_end", epoch, logs)
        bar.finish(done, logs)
        if here.is_distributed:
            model.stop_training = distributed.any_rank(model.stop_training)
        if model.stop_training:
            break
    model.eval()
    callbacks.call("on_train_end", logs)
    return history


@torch.inference_mode()
def evaluate(model, data: ArrayData, *, batch_size=32, verbose="auto", callbacks=None, sharded=False) -> dict:
    """Loss and metrics of `model` on `data` as a dict of floats, metrics reset first. `sharded` (under
    torchrun, within fit): each rank evaluates every world_size-th sample and the metrics are summed."""
    verbose = _verbosity(verbose)
    here = distributed.info()
    share = sharded and type(data) is ArrayData  # data that plans its own batches is evaluated whole
    if share:
        data = data.take(slice(here.rank, None, here.world_size))
    callbacks = CallbackList(callbacks or [], model, {"verbose": verbose})
    model.reset_metrics()
    model.eval()
    steps = data.num_batches(batch_size)
    bar = Progbar(steps, verbose)
    callbacks.call("on_test_begin", {})
    batches = data.batches(batch_size, device=model.device, trim=model.ignores_padding_length())
    with inference_pass():
        for step, (xs, y, weight) in enumerate(batches):
            callbacks.call("on_test_batch_begin", step, {})
            model.test_step(xs, y, weight)
            callbacks.call("on_test_batch_end", step, {})
            bar.update(step + 1, model.metric_logs)
    if share:
        distributed.sum_metrics([model.loss_tracker, *model.compiled_metrics])
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
    with inference_pass():
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
