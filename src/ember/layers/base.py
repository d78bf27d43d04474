"""`Layer`: an nn.Module with Keras's lazy `build(input_shape)` and `get_config()`.

Where shapes are inferred: a layer is built exactly once, on its first call (`Layer.__call__`),
from the shape of its first input. Models are built by sending one dummy sample through them
(`Model.build`), which builds every layer in order and records each layer's `output_shape`.
"""
import contextlib
import itertools
import re
import threading
from collections import defaultdict

import torch
from torch import nn

from ember.layers import regularizers

_name_counters: dict[str, itertools.count] = defaultdict(itertools.count)


_PASS = threading.local()


@contextlib.contextmanager
def inference_pass():
    """One evaluate or predict loop: its weights do not change inside the block, so a layer may keep what it
    derives from them from one batch to the next (`inference_pass_id`). Per thread; a new pass each time."""
    before = getattr(_PASS, "id", None)
    _PASS.id = object()
    try:
        yield
    finally:
        _PASS.id = before


def inference_pass_id():
    """An object that stands for the current `inference_pass` (None outside one): what a layer keeps for a
    pass is valid while this is the same object."""
    return getattr(_PASS, "id", None)


def to_snake_case(name: str) -> str:
    """Keras's layer-name rule: "MaxPooling2D" -> "max_pooling2d"."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(class_name: str) -> str:
    """"dense", then "dense_1", "dense_2", ... as Keras names layers in a session."""
    base = to_snake_case(class_name)
    n = next(_name_counters[base])
    return base if n == 0 else f"{base}_{n}"


def shape_without_batch(shape) -> tuple:
    return (None, *tuple(shape)[1:])


def saved_buffers(module: nn.Module):
    """Floating-point buffers that are saved with the weights (moving statistics), not constants a layer
    recomputes from its config (a mel filterbank, a window)."""
    for sub in module.modules():
        for name, buffer in sub.named_buffers(recurse=False):
            if name not in sub._non_persistent_buffers_set and buffer.is_floating_point():
                yield buffer


class Layer(nn.Module):
    """Base of every ember layer.

    A concrete layer stores its arguments in `__init__`, creates weights in `build(input_shape)`
    (the full input shape, batch axis first) and computes in `forward`. `get_config()` returns the
    constructor's keyword arguments so that `cls(**config)` rebuilds the layer.

    >>> class Scale(Layer):
    ...     def build(self, input_shape):
    ...         self.scale = nn.Parameter(torch.ones(input_shape[-1]))
    ...     def forward(self, x):
    ...         return x * self.scale
    """

    # Padding masks (Keras semantics): a layer whose `forward` takes `mask=` receives the mask of its input;
    # `compute_mask` gives the mask of its output, passed through where `supports_masking` is set.
    supports_masking = False

    def __init__(self, *, name: str | None = None, input_shape=None, trainable: bool = True, dtype=None,
                 activity_regularizer=None):
        super().__init__()
        if dtype not in (None, "float32", torch.float32):
            raise ValueError(f"{type(self).__name__}: only float32 weights are supported, got dtype={dtype!r}")
        self.name = name or unique_name(type(self).__name__)
        self.declared_input_shape = tuple(input_shape) if input_shape is not None else None
        self.trainable = trainable
        self.built = False
        self.output_shape = None
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.activity_losses = None  # a list while the model collects penalties (regularizers.Penalties)

    def build(self, input_shape: tuple) -> None:
        """Create weights for inputs of `input_shape`; layers without weights need not override."""

    def build_from(self, *args, **kwargs) -> None:
        """Build from the first call's arguments: `build(shape of the first input)`, unless a layer with
        several inputs (attention: query, value, key) needs all their shapes."""
        first = args[0] if args else next(iter(kwargs.values()))
        self.build(tuple(first.shape))

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs) if self.built else self._build_and_call(*args, **kwargs)
        if self.activity_losses is not None:
            self.activity_losses.append(regularizers.activity_penalty(self.activity_regularizer, out))
        return out

    def _build_and_call(self, *args, **kwargs):
        first = args[0] if args else next(iter(kwargs.values()))
        self.build_from(*args, **kwargs)
        self.to(first.device)  # weights follow the data the layer first sees
        self.train(self.training)  # sublayers made in build() take the layer's train/eval mode
        if not self.trainable:
            self.requires_grad_(False)
        self.built = True
        out = super().__call__(*args, **kwargs)
        self.output_shape = shape_without_batch(out.shape) if isinstance(out, torch.Tensor) else None
        return out

    def compute_mask(self, inputs, mask=None):
        return mask if self.supports_masking else None

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    def count_params(self) -> int:
        """Weights as Keras counts them: parameters plus non-trainable state such as moving statistics."""
        return sum(p.numel() for p in itertools.chain(self.parameters(), saved_buffers(self)))

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def layer_from_config(entry: dict) -> "Layer":
    """A wrapped layer saved as {"class_name": ..., "config": ...}; only ember's own layer classes qualify."""
    from ember.layers import LAYERS  # the registry imports every layer module, this one included
    name = entry.get("class_name") if isinstance(entry, dict) else None
    if name not in LAYERS:
        raise ValueError(f"unknown layer class {name!r} in a wrapped layer's config")
    return LAYERS[name].from_config(entry.get("config", {}))


def layer_config(layer: "Layer") -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}

