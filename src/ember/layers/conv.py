"""Convolution layers: Conv1D and Conv2D with Keras arguments, channels-last inputs."""
import torch
from torch import nn

from ember.layers import spatial
from ember.layers.core import _WithActivation
from ember.layers.initializers import initialize

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


class _Conv(_WithActivation):
    rank = 0

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 groups=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation, **kwargs)
        self.filters, self.groups, self.use_bias = int(filters), int(groups), use_bias
        self.kernel_size = spatial.as_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = spatial.as_tuple(strides, self.rank, "strides")
        self.dilation_rate = spatial.as_tuple(dilation_rate, self.rank, "dilation_rate")
        allowed = ("valid", "same", "causal") if self.rank == 1 else spatial.PADDINGS
        self.padding = spatial.check_padding(padding, allowed)
        self.data_format = data_format or "channels_last"
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape):
        channels = input_shape[1] if self.data_format == "channels_first" else input_shape[-1]
        # torch's own "same" is exact for stride 1; other strides pad explicitly (odd pixel after, as Keras)
        torch_padding = "same" if self.padding == "same" and set(self.strides) == {1} else 0
        self.conv = _CONV[self.rank](channels, self.filters, self.kernel_size, stride=self.strides,
                                     padding=torch_padding, dilation=self.dilation_rate, groups=self.groups,
                                     bias=self.use_bias)
        initialize(self.conv.weight, self.kernel_initializer)
        if self.use_bias:
            initialize(self.conv.bias, self.bias_initializer)

    def _pad(self, x):
        if self.padding == "causal":
            return nn.functional.pad(x, [(self.kernel_size[0] - 1) * self.dilation_rate[0], 0])
        if self.padding == "same" and self.conv.padding != "same":
            return spatial.pad_same(x, self.kernel_size, self.strides, self.dilation_rate)
        return x

    def convolve(self, x):
        """The convolution, without activation, of a channels-first input (channels-first out)."""
        return self.conv(self._pad(x))

    def pre_activation(self, x):
        x = spatial.channels_first(self.autocast(x), self.data_format)
        return spatial.channels_last(self.convolve(x), self.data_format)

    def forward(self, x):
        return self.activation(self.pre_activation(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": list(self.dilation_rate), "groups": self.groups, **self.activation_config(),
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels): `layers.Conv1D(64, 3, activation="relu")`."""
    rank = 1


class Conv2D(_Conv):
    """2-D convolution over (batch, height, width, channels): `layers.Conv2D(32, (3, 3), activation="relu")`."""
    rank = 2

    def build(self, input_shape):
        super().build(input_shape)
        self.conv.to(memory_format=torch.channels_last)  # see layers/spatial.py
