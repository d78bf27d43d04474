"""`Sequential`: a plain stack of layers, each feeding the next, built as soon as its input shape is known."""
import torch
from torch import nn

from ember.layers.core import InputLayer
from ember.models.model import Model


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
        if self.input_shape is not None:
            self.build((None, *self.input_shape))

    def pop(self) -> nn.Module:
        layer = self.layers[-1]
        del self.layers[-1]
        return layer

    def _set_input(self, shape, dtype):
        self.input_shape = tuple(shape)
        self.input_dtype = getattr(torch, dtype)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def output_activation(self):
        last = self.layers[-1] if len(self.layers) else None
        if last is None or not hasattr(last, "pre_activation") or not isinstance(last.activation_id, str):
            return None
        return last.activation_id

    def forward_logits(self, x):
        for layer in self.layers[:-1]:
            x = layer(x)
        return self.layers[-1].pre_activation(x)

    def get_config(self) -> dict:
        layer_configs = []
        for layer in self.layers:
            if not hasattr(layer, "get_config"):
                raise ValueError(f"cannot save a Sequential holding a plain torch module ({type(layer).__name__}); "
                                 "use an ember layer or save_weights()")
            layer_configs.append({"class_name": type(layer).__name__, "config": layer.get_config()})
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "input_dtype": str(self.input_dtype).removeprefix("torch."), "layers": layer_configs}
