"""Weight initializers by their Keras names, on torch tensors in torch's (out, in, *kernel) layout.

torch's fan computation for (out, in, *kernel) weights equals Keras's for (*kernel, in, out), so the
Keras formulas apply unchanged.
"""
import math
from typing import Callable

import torch
from torch import nn

# Keras draws "normal" variance-scaling initializers from a normal truncated at 2 std, then
# rescales by this constant so the variance stays as asked.
_TRUNCATION_STD = 0.87962566103423978


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.dim() < 2:
        return tensor.numel(), tensor.numel()
    return nn.init._calculate_fan_in_and_fan_out(tensor)


def _truncated_normal(tensor, std):
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def _variance_scaling(scale: float, mode: str, distribution: str) -> Callable:
    def init(tensor):
        fan_in, fan_out = _fans(tensor)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return nn.init.uniform_(tensor, -limit, limit)
        return _truncated_normal(tensor, math.sqrt(variance) / _TRUNCATION_STD)
    return init


INITIALIZERS: dict[str, Callable] = {
    "glorot_uniform": _variance_scaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "normal"),
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
    "random_normal": lambda t: nn.init.normal_(t, 0.0, 0.05),
    "random_uniform": lambda t: nn.init.uniform_(t, -0.05, 0.05),
    "uniform": lambda t: nn.init.uniform_(t, -0.05, 0.05),  # Keras's Embedding default
    "truncated_normal": lambda t: _truncated_normal(t, 0.05),
    "orthogonal": nn.init.orthogonal_,
}


@torch.no_grad()
def initialize(tensor: torch.Tensor, identifier) -> None:
    """Fill `tensor` in place with a Keras-named initializer (or a callable taking the tensor).

    >>> w = torch.empty(64, 576); initialize(w, "glorot_uniform")
    """
    if callable(identifier):
        identifier(tensor)
        return
    try:
        INITIALIZERS[identifier](tensor)
    except KeyError:
        raise ValueError(f"unknown initializer {identifier!r}; known: {', '.join(sorted(INITIALIZERS))}") from None
