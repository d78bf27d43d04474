"""Core layers: Input, Dense, Activation, Flatten, Reshape, Dropout, Rescaling."""
import math

import torch.nn.functional as F
from torch import nn

from ember.layers import regularizers
from ember.layers.activations import activation_name, get_activation
from ember.layers.base import Layer, layer_config, layer_from_config
from ember.layers.initializers import initialize


class InputLayer(Layer):
    """Declares the per-sample input shape of a Sequential model; passes data through.

    `batch_size` is accepted for Keras compatibility: batches may have any size.
    """

    def __init__(self, shape, *, batch_size=None, dtype="float32", name=None, **kwargs):
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.shape = tuple(shape)
        self.dtype = dtype

    def forward(self, x):
        return x

    def get_config(self):
        return {"shape": list(self.shape), "dtype": self.dtype, "name": self.name}


def Input(shape, *, batch_size=None, dtype="float32", name=None) -> InputLayer:
    """Keras's `Input(shape=...)`: put first in a Sequential to fix the input shape.

    >>> models.Sequential([layers.Input(shape=(28, 28, 1)), layers.Flatten()])
    """
    return InputLayer(shape, batch_size=batch_size, dtype=dtype, name=name)


class _WithActivation(Layer):
    """Shared by layers taking `activation=`: keeps the name for the config and the function for forward."""

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation_id = activation
        self.activation = get_activation(activation)

    @staticmethod
    def autocast(x):
        """Integer inputs (raw uint8 images, say) compute in float32, as Keras casts layer inputs."""
        return x if x.is_floating_point() else x.float()

    def activation_config(self) -> dict:
        name = activation_name(self.activation_id)
        if name is None:
            raise ValueError(f"layer {self.name!r}: a custom activation callable cannot be saved by name")
        return {"activation": name}


class Dense(_WithActivation):
    """Densely connected layer on the last axis: `activation(x @ kernel + bias)`.

    >>> layers.Dense(64, activation="relu")
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation, **kwargs)
        self.units = int(units)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.regularizers = {"linear.weight": regularizers.get(kernel_regularizer),
                             "linear.bias": regularizers.get(bias_regularizer) if use_bias else None}

    def build(self, input_shape):
        self.linear = nn.Linear(input_shape[-1], self.units, bias=self.use_bias)
        initialize(self.linear.weight, self.kernel_initializer)
        if self.use_bias:
            initialize(self.linear.bias, self.bias_initializer)

    def pre_activation(self, x):
        return self.linear(self.autocast(x))

    def forward(self, x):
        return self.activation(self.pre_activation(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, **self.activation_config(), "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "kernel_regularizer": regularizers.serialize(self.regularizers["linear.weight"]),
                "bias_regularizer": regularizers.serialize(self.regularizers["linear.bias"])}


class Activation(_WithActivation):
    """Applies an activation by name: `layers.Activation("softmax")`."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(activation, **kwargs)

    def pre_activation(self, x):
        return x

    def forward(self, x):
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), **self.activation_config()}


class Flatten(Layer):
    """Flattens all axes but the batch axis (channels-last order, as Keras)."""

    def forward(self, x):
        return x.flatten(1)


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (batch axis excluded; one entry may be -1)."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    def build(self, input_shape):
        size, target = math.prod(input_shape[1:]), math.prod(d for d in self.target_shape if d != -1)
        fits = size % target == 0 if -1 in self.target_shape else size == target
        if not fits:
            raise ValueError(f"layer {self.name!r}: cannot reshape input {shape_str(input_shape)} "
                             f"to {self.target_shape}")

    def forward(self, x):
        return x.reshape(x.shape[0], *self.target_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


def shape_str(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in (None, *shape[1:])) + ")"


class Dropout(Layer):
    """Zeroes a `rate` fraction of inputs during training and scales the rest by 1/(1-rate)."""

    supports_masking = True

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x):
        return F.dropout(x, self.rate, self.training)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Rescaling(Layer):
    """`x * scale + offset`, casting integer images to float: `layers.Rescaling(1 / 255)`."""

    supports_masking = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x):
        if not x.is_floating_point():
            x = x.float()
        return x * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class TimeDistributed(Layer):
    """Applies `layer` to every time step of (batch, steps, ...) inputs, with the same weights at each step.

    >>> layers.TimeDistributed(layers.Conv2D(16, 3))   # (batch, frames, 28, 28, 1) -> (batch, frames, 26, 26, 16)
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer_from_config(layer) if isinstance(layer, dict) else layer
        if not isinstance(self.layer, Layer):
            raise TypeError(f"TimeDistributed wraps an ember layer, got {type(self.layer).__name__}")

    def forward(self, x, mask=None):
        if x.dim() < 3:
            raise ValueError(f"layer {self.name!r}: TimeDistributed needs (batch, steps, ...) inputs, "
                             f"got shape {tuple(x.shape)}")
        out = self.layer(x.flatten(0, 1))  # steps become extra samples
        return out.unflatten(0, x.shape[:2])

    def get_config(self):
        return {**super().get_config(), "layer": layer_config(self.layer)}

