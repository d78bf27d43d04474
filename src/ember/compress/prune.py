"""Structured pruning: remove whole convolution filters and Dense units, so the model is really smaller.

For each Conv2D or Dense layer but the last, the `amount` fraction of its filters (units) with the smallest
L1 norm goes, together with everything that depends on them: the matching channels of a BatchNormalization
after it, and the matching input channels of the next Conv2D or Dense — through pooling, activation and
dropout layers, and through a Flatten (channels last: every spatial position's slice of the channel axis).
A layer whose outputs reach anything else (a Reshape, a residual block, a recurrent layer) is left whole.
The result is a new, narrower Sequential with the surviving weights copied; fine-tune it to recover
accuracy (`ember compress --prune 0.5 --finetune-epochs 1`).

`sparsify` is the other kind: unstructured magnitude pruning that zeroes the smallest weights in place.
It makes nothing smaller or faster by itself (dense kernels still multiply the zeros); it reports sparsity.
"""
import math

import torch

from ember.layers import (Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                          MaxPooling2D)
from ember.models import Sequential, model_from_config

_PASSES_CHANNELS = (Activation, AveragePooling2D, MaxPooling2D, Dropout, BatchNormalization)


def _out_weight(layer) -> torch.Tensor:
    return layer.conv.weight if isinstance(layer, Conv2D) else layer.linear.weight


def _consumer(layers, i):
    """(index of the layer that reads layer i's channels, index of a Flatten on the way or None), or None when
    something on the way would need more than channel slicing."""
    flatten = None
    for j in range(i + 1, len(layers)):
        layer = layers[j]
        if isinstance(layer, (Conv2D, Dense)):
            if flatten is not None and isinstance(layer, Conv2D):
                return None
            return j, flatten
        if isinstance(layer, Flatten) and flatten is None and isinstance(layers[i], Conv2D):
            flatten = j
        elif not isinstance(layer, _PASSES_CHANNELS):
            return None
    return None


def prune(model: Sequential, amount: float) -> Sequential:
    """A copy of `model` without the `amount` fraction (0 < amount < 1) of the lowest-L1 filters and units of
    each prunable layer (all Conv2D and Dense but the output layer)."""
    if not isinstance(model, Sequential):
        raise ValueError(f"structured pruning works on Sequential models, got {type(model).__name__}")
    if not 0 < amount < 1:
        raise ValueError(f"the pruning amount is a fraction in (0, 1), got {amount!r}")
    layers = list(model.layers)
    if any(not layer.built for layer in layers if isinstance(layer, (Conv2D, Dense))):
        raise ValueError("build the model (or train it) before pruning")
    weighted = [i for i, layer in enumerate(layers) if isinstance(layer, (Conv2D, Dense))]
    if any(isinstance(layers[i], Conv2D) and layers[i].groups != 1 for i in weighted):
        raise ValueError("grouped convolutions cannot be pruned by filter yet")
    keep_out, keep_in, keep_norm = {}, {}, {}
    for i in weighted[:-1]:  # the output layer keeps its classes
        found = _consumer(layers, i)
        if found is None:
            continue
        j, flatten = found
        weight = _out_weight(layers[i]).detach()
        n = weight.shape[0]
        kept = torch.sort(torch.topk(weight.abs().flatten(1).sum(1), max(1, round(n * (1 - amount)))).indices).values
        keep_out[i] = kept
        for k in range(i + 1, j):
            if isinstance(layers[k], BatchNormalization):
                keep_norm[k] = kept
        if flatten is None:
            keep_in[j] = kept
        else:  # channels last: feature (position * channels + channel)
            positions = math.prod(layers[flatten - 1].output_shape[1:-1]) if flatten > 0 else 1
            keep_in[j] = (torch.arange(positions)[:, None] * n + kept[None, :]).flatten()
    config = {"class_name": "Sequential", "config": model.get_config()}
    for i, kept in keep_out.items():
        key = "filters" if isinstance(layers[i], Conv2D) else "units"
        config["config"]["layers"][i]["config"][key] = len(kept)
    pruned = model_from_config(config)
    state = {}
    for index, layer in enumerate(layers):
        for name, tensor in layer.state_dict().items():
            tensor = tensor.detach()
            if index in keep_out and tensor.dim() >= 1:
                tensor = tensor.index_select(0, keep_out[index].to(tensor.device))
            if index in keep_in and tensor.dim() >= 2:
                tensor = tensor.index_select(1, keep_in[index].to(tensor.device))
            if index in keep_norm and tensor.dim() == 1:
                tensor = tensor.index_select(0, keep_norm[index].to(tensor.device))
            state[f"layers.{index}.{name}"] = tensor.contiguous()
    pruned.load_state_dict(state)
    pruned.metadata = dict(model.metadata)
    return pruned.to(next(model.parameters()).device)


def sparsify(model, amount: float) -> float:
    """Zero the `amount` fraction of smallest-magnitude weights of every Conv2D and Dense kernel in place
    (global magnitude pruning); returns the fraction of those kernels' weights that are now zero."""
    if not 0 < amount < 1:
        raise ValueError(f"the sparsity amount is a fraction in (0, 1), got {amount!r}")
    kernels = [_out_weight(layer) for layer in model.modules() if isinstance(layer, (Conv2D, Dense)) and layer.built]
    magnitudes = torch.cat([k.detach().abs().flatten() for k in kernels])
    threshold = torch.kthvalue(magnitudes.cpu(), max(1, int(len(magnitudes) * amount))).values
    with torch.no_grad():
        for kernel in kernels:
            kernel.masked_fill_(kernel.abs() <= threshold.to(kernel.device), 0.0)
    zeros = sum(int((k == 0).sum()) for k in kernels)
    return zeros / sum(k.numel() for k in kernels)
