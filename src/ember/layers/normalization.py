"""BatchNormalization with Keras's arguments and defaults (momentum 0.99, epsilon 1e-3, axis -1)."""
import torch
import torch.nn.functional as F
from torch import nn

from ember.layers.base import Layer
from ember.layers.initializers import initialize


def _add_scale_and_offset(layer, features: int) -> None:
    """gamma (if `scale`) and beta (if `center`) of `features` entries, with the layer's initializers."""
    layer.gamma = nn.Parameter(torch.empty(features)) if layer.scale else None
    layer.beta = nn.Parameter(torch.empty(features)) if layer.center else None
    if layer.scale:
        initialize(layer.gamma, layer.gamma_initializer)
    if layer.center:
        initialize(layer.beta, layer.beta_initializer)


class BatchNormalization(Layer):
    """Normalizes over the batch along `axis` (channels-last by default), with moving statistics for inference.

    Keras's `momentum` weighs the old moving statistic, torch's the new one: momentum 0.99 here is
    torch's 0.01. Moving variance is updated with the unbiased batch variance, as torch does.

    >>> layers.BatchNormalization()
    """

    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = int(axis), float(momentum), float(epsilon)
        self.center, self.scale = center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer

    def build(self, input_shape):
        channels = input_shape[self.axis]
        _add_scale_and_offset(self, channels)
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x):
        axis = self.axis % x.dim()
        x = x.movedim(axis, 1)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # free for channels-last images
        y = F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta,
                         training=self.training, momentum=1.0 - self.momentum, eps=self.epsilon)
        return y.movedim(1, axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer}


class LayerNormalization(Layer):
    """Normalizes each sample over its last axis (Keras's default `axis=-1`, epsilon 1e-3), via F.layer_norm.

    >>> layers.LayerNormalization()
    """

    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1, [-1]):
            raise ValueError(f"LayerNormalization supports axis=-1 (the features axis), got {axis!r}")
        self.epsilon, self.center, self.scale = float(epsilon), center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer

    def build(self, input_shape):
        _add_scale_and_offset(self, input_shape[-1])

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "axis": -1, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": self.beta_initializer,
                "gamma_initializer": self.gamma_initializer}


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over `axis` (Keras's UnitNormalization): sentence embeddings whose
    dot product is their cosine similarity."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def forward(self, x):
        return F.normalize(x, p=2.0, dim=self.axis, eps=1e-12)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
