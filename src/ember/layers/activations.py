"""Activation functions by their Keras names (`ACTIVATIONS`) and the `Activation` layer's lookup."""
from typing import Callable

import torch
import torch.nn.functional as F


def linear(x):
    return x


def softmax(x):
    return torch.softmax(x, dim=-1)


def log_softmax(x):
    return torch.log_softmax(x, dim=-1)


def hard_sigmoid(x):
    # Keras 3 definition: relu6(x + 3) / 6
    return F.relu6(x + 3.0) / 6.0


def leaky_relu(x):
    return F.leaky_relu(x, 0.2)  # Keras's default negative slope


ACTIVATIONS: dict[str, Callable] = {
    "linear": linear,
    "relu": torch.relu,
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "tanh": torch.tanh,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "leaky_relu": leaky_relu,
    "exponential": torch.exp,
}


def get_activation(identifier) -> Callable:
    """Return the activation function for a Keras name, None ('linear') or a callable.

    >>> get_activation("relu")(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    try:
        return ACTIVATIONS[identifier]
    except KeyError:
        raise ValueError(f"unknown activation {identifier!r}; known: {', '.join(sorted(ACTIVATIONS))}") from None


def activation_name(identifier) -> str | None:
    """The name to store in a layer config; a custom callable has none and cannot be saved by name."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        return identifier
    for name, fn in ACTIVATIONS.items():
        if fn is identifier:
            return name
    return None
