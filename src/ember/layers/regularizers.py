"""Weight penalties by Keras's names: `Embedding(..., embeddings_regularizer="l2")`, `Dense(..., kernel_regularizer=L2(1e-4))`.

A layer lists its penalized weights in `self.regularizers` ({parameter name: regularizer}); the model
adds `penalties(model)` to the training loss, as Keras adds `model.losses`.

Any layer also takes Keras's `activity_regularizer`: a penalty on its output, divided by the batch size (as
tf.keras does, so that its strength does not depend on the batch). It is collected only while the model
computes a training or evaluation loss (`collecting`).
"""
import contextlib

import torch
import torch.utils._pytree
from torch import nn


class L1L2:
    """`l1 * sum(|w|) + l2 * sum(w**2)` (Keras's defaults: 0.01 for a named "l1" or "l2")."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = float(l1), float(l2)
        if self.l1 < 0 or self.l2 < 0:
            raise ValueError(f"regularization factors must be >= 0, got l1={l1}, l2={l2}")

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        penalty = weight.new_zeros(())
        if self.l1:
            penalty = penalty + self.l1 * weight.abs().sum()
        if self.l2:
            penalty = penalty + self.l2 * weight.square().sum()
        return penalty

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


def L1(l1=0.01) -> L1L2:
    return L1L2(l1=l1)


def L2(l2=0.01) -> L1L2:
    return L1L2(l2=l2)


NAMES = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01)}


def get(identifier) -> L1L2 | None:
    """None, a name ("l1", "l2", "l1_l2"), a config dict ({"l1": 0, "l2": 1e-4}) or a regularizer."""
    if identifier is None or isinstance(identifier, L1L2):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in NAMES:
            raise ValueError(f"unknown regularizer {identifier!r}; known: {', '.join(NAMES)}")
        return NAMES[identifier.lower()]()
    if isinstance(identifier, dict):
        config = identifier.get("config", identifier)
        unknown = set(config) - {"l1", "l2"}
        if unknown:
            raise ValueError(f"a regularizer takes l1 and l2, got {sorted(unknown)}")
        return L1L2(**config)
    raise TypeError(f"a regularizer is a name, a dict of l1/l2 or L1L2, got {type(identifier).__name__}")


def serialize(regularizer: L1L2 | None) -> dict | None:
    return None if regularizer is None else regularizer.get_config()


def penalties(model: nn.Module) -> list[tuple[torch.Tensor, L1L2]]:
    """(weight, regularizer) for every penalized weight of the built layers of `model`."""
    found = []
    for module in model.modules():
        if not getattr(module, "built", True):
            continue  # its weights do not exist yet
        for attribute, regularizer in (getattr(module, "regularizers", None) or {}).items():
            if regularizer is not None:
                found.append((module.get_parameter(attribute), regularizer))
    return found


def total_penalty(found: list[tuple[torch.Tensor, L1L2]]) -> torch.Tensor:
    return sum(regularizer(weight) for weight, regularizer in found)


def activity_penalty(regularizer: L1L2, output) -> torch.Tensor:
    """Keras's activity penalty of one call: `regularizer(output) / batch size`, summed over the tensors of a
    layer that returns several (an RNN's states, attention scores); in float32 under mixed precision."""
    tensors = [t for t in torch.utils._pytree.tree_leaves(output) if isinstance(t, torch.Tensor)]
    return sum(regularizer(t.float()) / (max(t.shape[0], 1) if t.dim() else 1) for t in tensors)


class Penalties:
    """What a model adds to each batch's loss: its weight penalties and its layers' activity penalties."""

    def __init__(self, model: nn.Module):
        self.weights = penalties(model)
        self.activity_layers = [m for m in model.modules() if getattr(m, "activity_regularizer", None) is not None]

    def __bool__(self):
        return bool(self.weights or self.activity_layers)

    def total(self, loss: torch.Tensor) -> torch.Tensor:
        """`loss` plus the weight penalties and the activity penalties collected so far (see `collecting`)."""
        if self.weights:
            loss = loss + total_penalty(self.weights)
        for layer in self.activity_layers:
            loss = loss + sum(layer.activity_losses or ())
        return loss


@contextlib.contextmanager
def collecting(found: "Penalties | None"):
    """Within the block, layers with an activity regularizer record its penalty on each call; afterwards (an
    exception included) they stop, so that no graph is kept alive outside a loss computation."""
    layers = found.activity_layers if found else []
    for layer in layers:
        layer.activity_losses = []
    try:
        yield
    finally:
        for layer in layers:
            layer.activity_losses = None
