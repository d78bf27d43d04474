"""`Model`: a Layer that trains. Keras's compile/fit/evaluate/predict on any torch forward.

Subclass it and write `forward` (as a torch.nn.Module), or use `Sequential`. The seams to override
are `train_step`, `test_step` and `predict_step`; the loops live in `ember.train.trainer`.
"""
import contextlib
import dataclasses

import numpy as np
import torch

from ember.data.arrays import ArrayData
from ember.layers import regularizers
from ember.layers.activations import get_activation
from ember.layers.mixing import LabelMixer, mixed_loss
from ember.layers.base import Layer
from ember.models.summary import print_summary
from ember.train import losses as losses_lib
from ember.train import metrics as metrics_lib
from ember.train import optimizers as optimizers_lib
from ember.train import trainer
from ember.train import distributed
from ember.train.distributed import resolve_device
from ember.train.stepping import GradientSteps

# compile(precision=...): the autocast dtype of the forward pass (Lightning's names are accepted too)
PRECISIONS = {"fp32": None, "32": None, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
              "fp16": torch.float16, "16-mixed": torch.float16}


def _as_data(x, y, sample_weight, class_weight) -> ArrayData:
    """Arrays as an ArrayData; an ArrayData (e.g. `data.interactions.NegativeSampling`) as it is."""
    if not isinstance(x, ArrayData):
        return ArrayData(x, y, sample_weight, class_weight)
    if y is not None or sample_weight is not None or class_weight is not None:
        raise ValueError("fit(x=ArrayData) takes its targets and weights from the ArrayData: pass y=None")
    return x


class Model(Layer):
    """A trainable model with Keras's API.

    >>> class MLP(Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.hidden, self.out = layers.Dense(64, activation="relu"), layers.Dense(10)
    ...     def forward(self, x):
    ...         return self.out(self.hidden(x))
    >>> model = MLP(); model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True))
    """

    input_dtype = torch.float32

    def __init__(self, *, name=None, **kwargs):
        if kwargs.get("activity_regularizer") is not None:
            raise ValueError("a model takes no activity_regularizer: give it to the layers whose outputs it penalizes")
        super().__init__(name=name, **kwargs)
        self.optimizer = None
        self.loss_fn = None
        self.compiled_metrics: list = []
        self.loss_tracker = metrics_lib.Mean("loss")
        self.stop_training = False
        self._optimizer_spec = None
        self._logit_loss = None
        self._device = None
        self._compile_metrics = None
        self._autocast_dtype = None
        self._scaler = None      # fp16: the loss scaler
        self._gradient_steps = None       # GradientSteps when a step is more than backward + step (see _plan_steps)
        self._step_ends = True   # whether this batch ends an optimizer step (fit sets it with accumulation)
        self.__dict__["_ddp"] = None  # the DistributedDataParallel forward under torchrun (not a submodule)
        self._penalties = None  # regularizers.Penalties, found on the first step after building
        self._mixers = None  # the MixUp or CutMix layer, if any, found on the first step
        # JSON data saved with the model (e.g. class names and preprocessing a task needs to predict)
        self.metadata: dict = {}

    # -- building ---------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # a model has no weights of its own: its layers build themselves on this first call
        out = torch.nn.Module.__call__(self, *args, **kwargs)
        if not self.built:
            self.built = True
            self.output_shape = (None, *out.shape[1:]) if isinstance(out, torch.Tensor) else None
        return out

    def build(self, input_shape):
        """Create every layer's weights by sending one dummy sample of `input_shape` through the model.

        >>> model.build((None, 28, 28, 1))
        """
        sample = torch.zeros((1, *input_shape[1:]), dtype=self.input_dtype, device=self.device)
        was_training = self.training
        self.eval()
        with torch.no_grad():
            self(sample)
        self.train(was_training)

    def _needs_build(self) -> bool:
        return any(isinstance(m, Layer) and not m.built for m in self.modules() if m is not self)

    def _build_from(self, data: ArrayData) -> None:
        if self._needs_build() or not self.built:
            if len(data) == 0:
                raise ValueError("cannot build the model from an empty input")
            was_training = self.training
            self.eval()
            with torch.no_grad():
                self(*(x[:1].to(self.device) for x in data.xs))
            self.train(was_training)

    @property
    def device(self) -> torch.device:
        if self._device is not None:
            return self._device
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def ignores_padding_length(self) -> bool:
        """Whether the outputs stay the same when trailing padding of token-id inputs is cut off, so the
        loops pad each batch only to its longest text (`data.arrays.trim_padding`). Sequential works this
        out from its layers; a subclassed model keeps its batches as given."""
        return False

    # -- compiling ---------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, device="auto", precision="32"):
        """Set the optimizer, loss and metrics (Keras names, ember/torch objects or callables).

        `device="auto"` trains on CUDA when present, else on the CPU. `precision="bf16"` runs the forward
        pass under bfloat16 autocast (weights, optimizer and loss stay float32); "fp16" under float16
        autocast with a loss scaler. Under torchrun, `fit` trains data-parallel (`ember.train.distributed`).

        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self._device = resolve_device(device)
        self._autocast_dtype = PRECISIONS[precision]
        self._scaler = torch.amp.GradScaler(self._device.type) if self._autocast_dtype == torch.float16 else None
        self.__dict__["_ddp"], self._gradient_steps = None, None
        self.to(self._device)
        self.loss_fn = losses_lib.get(loss) if loss is not None else None
        self.compiled_metrics = [metrics_lib.get(m, self.loss_fn) for m in metrics or []]
        self._optimizer_spec = optimizers_lib.get(optimizer)
        self.optimizer = self._optimizer_spec if isinstance(self._optimizer_spec, torch.optim.Optimizer) else None
        self._logit_loss = self._loss_on_logits()
        self._output_fn = get_activation(self.output_activation()) if self._logit_loss is not None else None
        if self.output_activation() == "softmax" and all(map(metrics_lib.ranks_only, self.compiled_metrics)):
            self._output_fn = None  # the metrics only rank the scores, which the softmax keeps in order
        self._compile_metrics = list(metrics or [])
        self._penalties = self._mixers = None
        if not self._needs_build() and any(True for _ in self.parameters()):
            self._ensure_optimizer()

    def _loss_on_logits(self):
        """The loss to apply to logits when the model ends in the activation that the loss undoes."""
        wanted = losses_lib.LOGIT_ACTIVATIONS.get(type(self.loss_fn))
        if wanted is None or self.loss_fn.from_logits or not self.has_logits_before(wanted):
            return None
        return dataclasses.replace(self.loss_fn, from_logits=True)

    def has_logits_before(self, activation: str) -> bool:
        """True if the model ends in `activation` and `forward_logits` may stand for the forward pass up to it:
        no activity penalty is on the output that forward_logits stops before."""
        if self.output_activation() != activation:
            return False
        last = list(getattr(self, "layers", []))[-1:]
        return not any(getattr(layer, "activity_regularizer", None) is not None for layer in last)

    def output_activation(self) -> str | None:
        """Name of the final activation if `forward_logits` can stop before it (Sequential knows)."""
        return None

    def forward_logits(self, *inputs):
        raise NotImplementedError

    def _ensure_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            params = list(self.parameters())
            self.optimizer = self._optimizer_spec.build(params, self.layer_depths(params))
        return self.optimizer

    def layer_depths(self, params) -> list[int] | None:
        """How deep below the output each of `params` sits, in layers (for layer-wise learning-rate decay);
        None when the model cannot tell (Sequential can)."""
        return None

    def _check_compiled(self):
        if self.loss_fn is None:
            raise RuntimeError("the model must be compiled with a loss before training or evaluating: "
                               "call model.compile(optimizer, loss)")

    # -- steps (the seams) ---------------------------------------------------------------------
    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    @property
    def losses(self) -> list[torch.Tensor]:
        """The weight penalties of layers built with regularizers (Keras's `model.losses`), added to the loss."""
        return [regularizer(weight) for weight, regularizer in regularizers.penalties(self)]

    def _forward_for_loss(self, xs, logits: bool):
        if self._ddp is not None and self.training and torch.is_grad_enabled():
            return self._ddp(*xs, logits=logits)  # so the backward pass averages the gradients over the ranks
        return self.forward_logits(*xs) if logits else self(*xs)

    def compute_loss_and_predictions(self, xs, y, weight):
        """The batch's loss with the regularization penalties, and predictions for the metrics."""
        if self._penalties is None and not self._needs_build():  # found once built; reset by compile and add
            self._penalties = regularizers.Penalties(self)
        with regularizers.collecting(self._penalties):
            loss, y_pred = self.loss_and_predictions(xs, y, weight)
            if self._penalties is None:  # this forward built the model
                self._penalties = regularizers.Penalties(self)
            return (self._penalties.total(loss) if self._penalties else loss), y_pred

    def loss_and_predictions(self, xs, y, weight):
        """The batch's loss before the regularization penalties, and predictions for the metrics (the logits
        when every metric only ranks them). Models with their own objective (distillation, a VAE's ELBO)
        override this; the penalties are added either way."""
        if self._logit_loss is not None:
            with self._autocast():
                logits = self._forward_for_loss(xs, logits=True)
            logits = logits.float()
            y_pred = logits.detach() if self._output_fn is None else self._output_fn(logits.detach())
            return self._batch_loss(self._logit_loss, y, logits, weight), y_pred
        with self._autocast():
            y_pred = self._forward_for_loss(xs, logits=False)
        y_pred = y_pred.float()
        return self._batch_loss(self.loss_fn, y, y_pred, weight), y_pred.detach()

    def _batch_loss(self, loss_fn, y, y_pred, weight):
        """The loss of the batch just run forward; when a MixUp or CutMix layer mixed its inputs, the loss of
        each input's two labels in the proportion the images were mixed."""
        if self._mixers is None:  # found once, like the penalties; reset by compile and add
            self._mixers = [m for m in self.modules() if isinstance(m, LabelMixer)]
            if len(self._mixers) > 1:
                raise ValueError(f"a model takes one label-mixing layer, got {len(self._mixers)} "
                                 f"({', '.join(type(m).__name__ for m in self._mixers)})")
        mix = self._mixers[0].last_mix if self._mixers else None
        if mix is None:
            return loss_fn(y, y_pred, weight)
        self._mixers[0].last_mix = None
        return mixed_loss(loss_fn, y, y_pred, weight, mix)

    def train_step(self, xs, y, weight):
        """One optimizer step on a batch (or a share of one, with gradient accumulation); updates the compiled
        metrics (no host sync)."""
        if self._gradient_steps is None:
            loss, y_pred = self.compute_loss_and_predictions(xs, y, weight)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        else:
            with self._gradient_steps.context(self._step_ends):
                loss, y_pred = self.compute_loss_and_predictions(xs, y, weight)
                self._gradient_steps.backward(loss, self._step_ends)
        self.update_metrics(loss.detach(), y, y_pred, weight, len(xs[0]))

    def test_step(self, xs, y, weight):
        loss, y_pred = self.compute_loss_and_predictions(xs, y, weight)
        self.update_metrics(loss, y, y_pred, weight, len(xs[0]))

    def predict_step(self, xs):
        with self._autocast():
            out = self(*xs)
        return out.float() if isinstance(out, torch.Tensor) else out

    # -- metrics -----------------------------------------------------------------------------
    def update_metrics(self, loss, y, y_pred, weight, batch_size):
        self.loss_tracker.add(loss, batch_size)
        for metric in self.compiled_metrics:
            metric.update_state(y, y_pred, weight)

    def reset_metrics(self):
        for metric in (self.loss_tracker, *self.compiled_metrics):
            metric.reset_state()

    def metric_results(self) -> dict:
        """Current metric values as 0-d tensors (no host sync)."""
        return {"loss": self.loss_tracker.result(), **{m.name: m.result() for m in self.compiled_metrics}}

    def metric_logs(self) -> dict:
        """Current metric values as floats."""
        return {name: float(value) for name, value in self.metric_results().items()}

    # -- Keras's API ---------------------------------------------------------------------------
    def _prepare(self, data: ArrayData):
        self._check_compiled()
        if self._device is None:
            self._device = self.device
        self._build_from(data)
        self._ensure_optimizer()
        self._plan_steps()

    @property
    def accumulation_steps(self) -> int:
        """Batches per optimizer step (the optimizer's `gradient_accumulation_steps`)."""
        return getattr(self._optimizer_spec, "gradient_accumulation_steps", 1)

    def _plan_steps(self):
        """Join torchrun's process group when started by it (DDP), and choose how a loss becomes a step."""
        if distributed.setup(self.device).is_distributed and self._ddp is None:
            self.__dict__["_ddp"] = distributed.wrap(self)
        clip = getattr(self._optimizer_spec, "global_clipnorm", None)
        if self.accumulation_steps > 1 or clip is not None or self._scaler is not None:
            self._gradient_steps = GradientSteps(self.optimizer, self.parameters(), accumulate=self.accumulation_steps,
                                        clip_norm=clip, scaler=self._scaler, ddp=self._ddp)
        else:
            self._gradient_steps = None

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            validation_batch_size=None, validation_freq=1):
        """Train for `epochs` epochs over `x`, `y` in batches of `batch_size` (32); returns a History.

        >>> history = model.fit(x_train, y_train, epochs=5, validation_split=0.1)
        """
        data = _as_data(x, y, sample_weight, class_weight)
        self._prepare(data)
        return trainer.fit(self, data, batch_size=batch_size or 32, epochs=epochs, verbose=verbose,
                           callbacks=callbacks, validation_split=validation_split, validation_data=validation_data,
                           shuffle=shuffle, initial_epoch=initial_epoch,
                           validation_batch_size=validation_batch_size, validation_freq=validation_freq)

    def _keras_return(self, logs: dict, return_dict: bool):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, callbacks=None,
                 return_dict=False):
        """Loss (a float) or [loss, *metrics] on the given data; a dict with `return_dict=True`.

        >>> test_loss, test_acc = model.evaluate(x_test, y_test)
        """
        data = ArrayData(x, y, sample_weight)
        self._check_compiled()
        self._build_from(data)
        logs = trainer.evaluate(self, data, batch_size=batch_size or 32, verbose=verbose, callbacks=callbacks)
        return self._keras_return(logs, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None) -> np.ndarray:
        """Outputs for `x` as a NumPy array, computed in batches under inference mode."""
        data = ArrayData(x)
        self._build_from(data)
        return trainer.predict(self, data, batch_size=batch_size or 32, verbose=verbose, callbacks=callbacks)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on exactly this batch; returns its loss (and metrics)."""
        data = ArrayData(x, y, sample_weight, class_weight).to(self._device or self.device)
        self._prepare(data)
        self.reset_metrics()
        self.train()
        self.train_step(data.xs, data.y, data.weight)
        return self._keras_return(self.metric_logs(), return_dict)

    @torch.inference_mode()
    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        data = ArrayData(x, y, sample_weight).to(self.device)
        self._check_compiled()
        self.reset_metrics()
        self.eval()
        self.test_step(data.xs, data.y, data.weight)
        return self._keras_return(self.metric_logs(), return_dict)

    @torch.inference_mode()
    def predict_on_batch(self, x) -> np.ndarray:
        data = ArrayData(x).to(self.device)
        self.eval()
        return self.predict_step(data.xs).cpu().numpy()

    def summary(self, print_fn=None):
        """Print layers, output shapes and parameter counts as Keras does."""
        print_summary(self, print_fn=print_fn)

    def get_weights(self) -> list[np.ndarray]:
        """All weights (parameters and moving statistics) as NumPy arrays, in torch layout."""
        return [t.detach().cpu().numpy().copy() for t in self.state_dict().values() if t.is_floating_point()]

    def set_weights(self, weights) -> None:
        keys = [k for k, t in self.state_dict().items() if t.is_floating_point()]
        if len(keys) != len(weights):
            raise ValueError(f"set_weights expects {len(keys)} arrays, got {len(weights)}")
        self.load_state_dict({k: torch.as_tensor(np.asarray(w)) for k, w in zip(keys, weights)}, strict=False)

    def save(self, filepath, include_optimizer=True) -> None:
        """Write a `.ember` file: architecture as JSON and weights as safetensors (no pickle)."""
        from ember.models.saving import save_model
        save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        from ember.models.saving import save_weights
        save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        from ember.models.saving import load_weights
        load_weights(self, filepath)

    def compile_config(self) -> dict | None:
        """The compile arguments as data when they are all given by name or spec; else None."""
        if self._compile_metrics is None:
            return None
        loss_name = losses_lib.name_of(self.loss_fn)
        opt_name = optimizers_lib.name_of(self._optimizer_spec)
        if loss_name is None or opt_name is None or not all(isinstance(m, str) for m in self._compile_metrics):
            return None
        return {"optimizer": {"class_name": opt_name, "config": self._optimizer_spec.get_config()},
                "loss": {"class_name": loss_name, "config": self.loss_fn.get_config()},
                "metrics": self._compile_metrics}
