"""`Sequential`: a plain stack of layers, each feeding the next, built as soon as its input shape is known."""
import contextlib
import functools
import inspect
import threading

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from ember.layers.augmentation import AffineLayer, compose_affine
from ember.layers.base import Layer
from ember.layers.conv import Conv2D
from ember.layers.core import Activation, Dense, Dropout, InputLayer
from ember.layers.embedding import Embedding
from ember.layers.normalization import LayerNormalization, UnitNormalization
from ember.layers.pooling import (AveragePooling2D, GlobalAveragePooling1D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                                  MaxPooling1D, MaxPooling2D)
from ember.layers.recurrent import Bidirectional, _RNN
from ember.layers.text import TokenAugmentation
from ember.layers.transformer import (BertEmbedding, FirstTokenPooling, PositionalEmbedding, TransformerDecoder,
                                      TransformerEncoder)
from ember.models.model import Model

# Max pooling commutes with a non-decreasing activation: pool(f(x)) == f(pool(x)), values and gradients.
# Sequential therefore pools first, so the activation (forward and backward) touches 4x fewer values
# after a 2x2 pool: 5% of a training step of the classic MNIST CNN on CPU. Exported graphs keep the layers'
# own order (`layers_in_order`): ONNX Runtime fuses a convolution with the activation after it, and int8 needs
# that fusion to keep the pooling in integers (classic CNN, batch 1: 13 nodes instead of 25).
_IN_ORDER = threading.local()
_MAX_POOLS = (MaxPooling1D, MaxPooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D)
_NON_DECREASING = {"relu", "relu6", "leaky_relu", "elu", "selu", "sigmoid", "tanh", "softplus", "linear"}


def _pools_first(layer, following) -> bool:
    return (isinstance(following, _MAX_POOLS) and hasattr(layer, "pre_activation")
            and getattr(layer, "activation_id", None) in _NON_DECREASING
            and layer.activity_regularizer is None and following.activity_regularizer is None)


def _resamples_with(layer, following) -> bool:
    """Consecutive geometric augmentations with the same fill and interpolation compose into one resampling."""
    return (isinstance(layer, AffineLayer) and isinstance(following, AffineLayer)
            and (layer.fill_mode, layer.interpolation, layer.fill_value)
            == (following.fill_mode, following.interpolation, following.fill_value))


def plan_steps(layers) -> list:
    """The forward pass as steps: (layer,); (layer, max_pool) to run as activation(pool(pre_activation));
    a run of geometric augmentation layers, resampled once; consecutive 2-D convolution and pooling steps
    (but the last) as one ChannelsFirstRun."""
    steps, i = [], 0
    while i < len(layers):
        if isinstance(layers[i], AffineLayer):
            end = i + 1
            while end < len(layers) and _resamples_with(layers[end - 1], layers[end]):
                end += 1
            steps.append(tuple(layers[i:end]))
            i = end
        elif i + 1 < len(layers) and _pools_first(layers[i], layers[i + 1]):
            steps.append((layers[i], layers[i + 1]))
            i += 2
        else:
            steps.append((layers[i],))
            i += 1
    return _join_channels_first(steps[:-1]) + steps[-1:]  # the last stays alone: forward_logits stops before
                                                           # its activation


_SPATIAL_2D = (Conv2D, MaxPooling2D, AveragePooling2D)  # these exactly: a subclass may change what they do


def _join_channels_first(steps) -> list:
    joined, run = [], []
    for step in [*steps, None]:
        if step is not None and all(type(layer) in _SPATIAL_2D and layer.data_format == "channels_last"
                                    and layer.activity_regularizer is None for layer in step):
            run.append(step)
            continue
        if run:
            joined.append(ChannelsFirstRun(run))
            run = []
        if step is not None:
            joined.append(step)
    return joined


def _called_plainly(layers) -> bool:
    """True when no module hook (a layer's own or a global one) would see the layers being called."""
    return not (torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or torch_module._global_backward_hooks or torch_module._global_backward_pre_hooks
                or any(layer._forward_hooks or layer._forward_pre_hooks or layer._backward_hooks
                       or layer._backward_pre_hooks for layer in layers))


class ChannelsFirstRun:
    """Consecutive steps of 2-D convolution and pooling layers on channels-last data, run as one step: the
    batch moves its channel axis once on the way in and once on the way out, and each layer's channels-first
    operation is called without the module-call machinery around it (about 0.1 ms of a 7 ms training step of
    the classic MNIST CNN on CPU). Until every layer is built, or while any has hooks, the layers are called
    one by one, the ordinary way."""

    def __init__(self, steps):
        self.steps = steps
        self.layers = [layer for step in steps for layer in step]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __call__(self, x):
        if not self._direct():
            for step in self.steps:
                x = run_step(step, x)
            return x
        x = x.movedim(-1, 1)
        x = (x if x.is_floating_point() else x.float()).contiguous(memory_format=torch.channels_last)
        for step in self.steps:
            if isinstance(step[0], Conv2D):
                x = step[0].convolve(x)
                x = step[0].activation(step[1].pool(x) if len(step) == 2 else x)
            else:
                x = step[0].pool(x)
        return x.movedim(1, -1)

    def _direct(self) -> bool:
        return all(layer.built for layer in self.layers) and _called_plainly(self.layers)


@contextlib.contextmanager
def layers_in_order():
    """Run every Sequential forward layer by layer, as written, inside the block (what export traces)."""
    before = getattr(_IN_ORDER, "active", False)
    _IN_ORDER.active = True
    try:
        yield
    finally:
        _IN_ORDER.active = before


def run_step(step, x):
    if isinstance(step, ChannelsFirstRun):
        return step(x)
    if len(step) == 1:
        return step[0](x)
    if isinstance(step[0], AffineLayer):
        if step[0].training and all(layer.built for layer in step):
            return compose_affine(list(step), x)
        for layer in step:  # evaluation (each passes its input through), or the building first call
            x = layer(x)
        return x
    layer, pool = step
    if not layer.built or not _called_plainly(step):  # the first call builds the layer the ordinary way; hooks
        return pool(layer(x))                          # see each layer's own input and output
    return layer.activation(pool(layer.pre_activation(x)))


# Layers whose outputs at real steps never depend on how much padding follows them (the mask does the work)
_STEPWISE = (Dense, Dropout, Activation, LayerNormalization, TransformerEncoder, TransformerDecoder, UnitNormalization)


def _sequence_state(layer) -> str:
    """"ends" if `layer` turns masked sequences into one vector, "stepwise" if it keeps them padding-blind,
    else "other" (its result may depend on the padded length)."""
    recurrent = layer.forward_layer if isinstance(layer, Bidirectional) else layer
    if (isinstance(layer, (GlobalAveragePooling1D, GlobalMaxPooling1D)) and not layer.keepdims
            and layer.data_format == "channels_last") or isinstance(layer, FirstTokenPooling):
        return "ends"
    if isinstance(recurrent, _RNN):
        if not recurrent.return_sequences:
            return "ends"
        return "stepwise" if isinstance(layer, Bidirectional) or not recurrent.go_backwards else "other"
    return "stepwise" if isinstance(layer, _STEPWISE) else "other"


def padding_blind(layers) -> bool:
    """True for embedding (mask_zero) -> padding-blind layers -> a layer ending the sequence -> anything:
    cutting trailing padding from a batch then changes no output. Token augmentation in front keeps the
    padding at the end, so it changes nothing here."""
    while layers and isinstance(layers[0], TokenAugmentation):
        layers = layers[1:]
    if not layers or not (isinstance(layers[0], BertEmbedding) or
                          isinstance(layers[0], (Embedding, PositionalEmbedding)) and layers[0].mask_zero):
        return False
    for layer in layers[1:]:
        state = _sequence_state(layer)
        if state != "stepwise":
            return state == "ends"
    return False


def _takes_mask(layer) -> bool:
    return _forward_takes_mask(type(layer))


@functools.cache
def _forward_takes_mask(cls) -> bool:  # once per class, not per layer call: signature() is slow
    return "mask" in inspect.signature(cls.forward).parameters


class Sequential(Model):
    """A linear stack of layers.

    The input shape comes from a leading `layers.Input(shape=...)` or from `input_shape=` on the first
    layer; once known, each `add` builds the new layer so `summary()` works before training.

    >>> model = models.Sequential()
    >>> model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    >>> model.add(layers.Flatten()); model.add(layers.Dense(10, activation="softmax"))
    """

    def __init__(self, layers=None, *, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.layers = nn.ModuleList()
        self.input_shape = None
        self.input_dtype = torch.float32
        self._steps, self._steps_for = [], 0
        self._masks, self._masks_for = False, 0
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: nn.Module) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(f"Sequential.add expects a layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer):
            if len(self.layers):
                raise ValueError("layers.Input must come first in a Sequential model")
            self._set_input(layer.shape, layer.dtype)
            return
        if not len(self.layers) and getattr(layer, "declared_input_shape", None) is not None:
            self._set_input(layer.declared_input_shape, "float32")
        self.layers.append(layer)
        self.built = False
        self._penalties = self._mixers = None  # the new layer may carry regularizers or mix labels
        if self.input_shape is not None:
            self.build((None, *self.input_shape))

    def pop(self) -> nn.Module:
        layer = self.layers[-1]
        del self.layers[-1]
        self._penalties = self._mixers = None  # the removed layer's regularizers and mixing go with it
        self._steps_for = self._masks_for = -1  # plans made for the old stack
        return layer

    def build(self, input_shape):
        if self.input_shape is None:  # remembered so that a saved model rebuilds itself when loaded
            self._set_input(tuple(input_shape)[1:], "float32")
        super().build(input_shape)

    def _build_from(self, data):
        if self.input_shape is None and len(data):
            x = data.xs[0]
            self._set_input(tuple(x.shape[1:]), "float32" if x.is_floating_point() else str(x.dtype)[len("torch."):])
        super()._build_from(data)

    def _set_input(self, shape, dtype):
        self.input_shape = tuple(shape)
        self.input_dtype = getattr(torch, dtype)

    def steps(self) -> list[tuple]:
        if getattr(_IN_ORDER, "active", False):
            return [(layer,) for layer in self.layers]
        if self._steps_for != len(self.layers):  # layers changed since the plan was made
            self._steps, self._steps_for = plan_steps(list(self.layers)), len(self.layers)
        return self._steps

    def forward(self, x):
        if self._makes_masks():
            return self._forward_masked(x, logits=False)
        for step in self.steps():
            x = run_step(step, x)
        return x

    def layer_depths(self, params) -> list[int]:
        """0 for the weights of the last layer that has any, 1 for the one below it, ..."""
        weighted = [layer for layer in self.layers if any(True for _ in layer.parameters())]
        depth = {id(p): len(weighted) - 1 - i for i, layer in enumerate(weighted) for p in layer.parameters()}
        return [depth.get(id(p), 0) for p in params]

    def ignores_padding_length(self) -> bool:
        return padding_blind(list(self.layers))

    def _makes_masks(self) -> bool:
        if self._masks_for != len(self.layers):  # layers changed since last asked
            self._masks = any(getattr(type(layer), "compute_mask", Layer.compute_mask) is not Layer.compute_mask
                              for layer in self.layers)
            self._masks_for = len(self.layers)
        return self._masks

    def _forward_masked(self, x, logits: bool):
        """Layer by layer, handing each the padding mask of its input (Keras's mask propagation)."""
        mask = None
        for i, layer in enumerate(self.layers):
            last = logits and i == len(self.layers) - 1
            call = layer.pre_activation if last else layer
            out = call(x, mask=mask) if mask is not None and _takes_mask(layer) else call(x)
            mask = layer.compute_mask(x, mask) if isinstance(layer, Layer) else None
            x = out
        return x

    def output_activation(self):
        last = self.layers[-1] if len(self.layers) else None
        if last is None or not hasattr(last, "pre_activation") or not isinstance(last.activation_id, str):
            return None
        return last.activation_id

    def forward_logits(self, x):
        if self._makes_masks():
            return self._forward_masked(x, logits=True)
        *body, (last,) = self.steps()  # a model with an output activation ends in a single-layer step
        for step in body:
            x = run_step(step, x)
        return last.pre_activation(x)

    def get_config(self) -> dict:
        layer_configs = []
        for layer in self.layers:
            if not hasattr(layer, "get_config"):
                raise ValueError(f"cannot save a Sequential holding a plain torch module ({type(layer).__name__}); "
                                 "use an ember layer or save_weights()")
            layer_configs.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "input_dtype": str(self.input_dtype).removeprefix("torch."), "layers": layer_configs}
