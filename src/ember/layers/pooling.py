"""Pooling layers: Max/Average pooling 1D/2D and their global variants, channels-last inputs."""
import torch
import torch.nn.functional as F

from ember.layers import spatial
from ember.layers.base import Layer

_MAX = {1: F.max_pool1d, 2: F.max_pool2d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d}


class _Pooling(Layer):
    rank = 0

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = spatial.as_tuple(pool_size, self.rank, "pool_size")
        self.strides = spatial.as_tuple(strides, self.rank, "strides") if strides is not None else self.pool_size
        self.padding = spatial.check_padding(padding)
        self.data_format = data_format or "channels_last"

    def forward(self, x):
        x = spatial.channels_first(x, self.data_format)
        return spatial.channels_last(self.pool(x), self.data_format)

    def _same_pads(self, x):
        ones = (1,) * self.rank
        return spatial.same_padding(x.shape[2:], self.pool_size, self.strides, ones) if self.padding == "same" else []

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "data_format": self.data_format}


class _MaxPooling(_Pooling):
    def pool(self, x):
        pads = self._same_pads(x)
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))  # padding never wins a max, as in Keras
        return _MAX[self.rank](x, self.pool_size, self.strides)


class _AveragePooling(_Pooling):
    def pool(self, x):
        pads = self._same_pads(x)
        if not any(pads):
            return _AVG[self.rank](x, self.pool_size, self.strides)
        # Keras averages only the real inputs under each window: divide by the window's coverage
        summed = _AVG[self.rank](F.pad(x, pads), self.pool_size, self.strides)
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        coverage = _AVG[self.rank](F.pad(ones, pads), self.pool_size, self.strides)
        return summed / coverage


class MaxPooling1D(_MaxPooling):
    """Max over windows of `pool_size` steps: `layers.MaxPooling1D(2)`."""
    rank = 1


class MaxPooling2D(_MaxPooling):
    """Max over `pool_size` windows: `layers.MaxPooling2D((2, 2))`."""
    rank = 2


class AveragePooling1D(_AveragePooling):
    """Mean over windows of `pool_size` steps: `layers.AveragePooling1D(2)`."""
    rank = 1


class AveragePooling2D(_AveragePooling):
    """Mean over `pool_size` windows: `layers.AveragePooling2D((2, 2))`."""
    rank = 2


class _GlobalPooling(Layer):
    rank = 0

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or "channels_last"
        self.keepdims = keepdims

    def _axes(self):
        first = 2 if self.data_format == "channels_first" else 1
        return tuple(range(first, first + self.rank))

    def _steps_mask(self, mask, x):
        """A (batch, steps) padding mask shaped to broadcast over the channels axis."""
        return mask.bool()[:, None, :] if self.data_format == "channels_first" else mask.bool()[..., None]

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class _GlobalAverage(_GlobalPooling):
    def forward(self, x, mask=None):
        if mask is not None:  # the mean of the real steps only
            weights = self._steps_mask(mask, x).to(x.dtype)
            total = (x * weights).sum(dim=self._axes(), keepdim=self.keepdims)
            return total / weights.sum(dim=self._axes(), keepdim=self.keepdims).clamp(min=1)
        return x.mean(dim=self._axes(), keepdim=self.keepdims)


class _GlobalMax(_GlobalPooling):
    def forward(self, x, mask=None):
        if mask is None:
            return x.amax(dim=self._axes(), keepdim=self.keepdims)
        steps = self._steps_mask(mask, x)
        pooled = x.masked_fill(~steps, float("-inf")).amax(dim=self._axes(), keepdim=self.keepdims)
        # a sequence with no real step (an empty text) pools to zeros, as the average does, not to -inf
        empty = ~steps.any(dim=self._axes(), keepdim=self.keepdims)
        return pooled.masked_fill(empty, 0.0)


class GlobalAveragePooling1D(_GlobalAverage):
    """Mean over the steps axis: (batch, steps, channels) -> (batch, channels)."""
    rank = 1


class GlobalAveragePooling2D(_GlobalAverage):
    """Mean over height and width: (batch, h, w, channels) -> (batch, channels)."""
    rank = 2


class GlobalMaxPooling1D(_GlobalMax):
    """Max over the steps axis: (batch, steps, channels) -> (batch, channels)."""
    rank = 1


class GlobalMaxPooling2D(_GlobalMax):
    """Max over height and width: (batch, h, w, channels) -> (batch, channels)."""
    rank = 2
