"""Composite layers that named architectures are made of, so they stay `Sequential` and save as data."""
import torch

from ember.layers.base import Layer
from ember.layers.conv import Conv2D
from ember.layers.normalization import BatchNormalization


class ResidualBlock(Layer):
    """The basic ResNet block (He et al. 2016) on channels-last images.

    relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); the shortcut is the identity, or a strided
    1x1 convolution with batch norm where the block changes the width or the resolution.

    >>> block = layers.ResidualBlock(32, strides=2)   # (None, 28, 28, 16) -> (None, 14, 14, 32)
    """

    def __init__(self, filters, strides=1, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.momentum = int(filters), int(strides), float(momentum)

    def build(self, input_shape):
        self.conv1 = Conv2D(self.filters, 3, strides=self.strides, padding="same", use_bias=False,
                            kernel_initializer="he_normal")
        self.bn1 = BatchNormalization(momentum=self.momentum)
        self.conv2 = Conv2D(self.filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")
        self.bn2 = BatchNormalization(momentum=self.momentum)
        if self.strides != 1 or input_shape[-1] != self.filters:
            self.shortcut_conv = Conv2D(self.filters, 1, strides=self.strides, use_bias=False,
                                        kernel_initializer="he_normal")
            self.shortcut_bn = BatchNormalization(momentum=self.momentum)
        else:
            self.shortcut_conv = self.shortcut_bn = None

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
        return torch.relu(h + shortcut)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides, "momentum": self.momentum}
