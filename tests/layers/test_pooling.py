import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember import layers
from tests.conftest import assert_close
from tests.layers.harness import check_layer


def nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def test_max_pooling2d_matches_torch():
    x = torch.randn(2, 3, 26, 26)
    out = check_layer(layers.MaxPooling2D((2, 2)), (2, 26, 26, 3))
    assert out.shape == (2, 13, 13, 3)
    assert_close(layers.MaxPooling2D((2, 2))(nhwc(x)), nhwc(nn.MaxPool2d(2)(x)))


def test_max_pooling2d_valid_floors_odd_sizes():
    assert layers.MaxPooling2D((2, 2))(torch.zeros(1, 11, 11, 64)).shape == (1, 5, 5, 64)


def _average_excluding_padding(x, pool, stride):
    """Keras/TF 'same' average pooling over (N, C, L), written out window by window."""
    n, c, length = x.shape
    out_len = -(-length // stride)
    total = max((out_len - 1) * stride + pool - length, 0)
    start = -(total // 2)
    out = np.zeros((n, c, out_len), dtype=np.float32)
    for i in range(out_len):
        lo, hi = max(start + i * stride, 0), min(start + i * stride + pool, length)
        out[:, :, i] = x[:, :, lo:hi].mean(axis=-1)
    return out


def test_average_pooling1d_same_excludes_padding():
    x = torch.randn(2, 3, 7)
    layer = layers.AveragePooling1D(pool_size=3, strides=2, padding="same")
    out = check_layer(layer, (2, 7, 3))
    assert out.shape == (2, 4, 3)
    expected = _average_excluding_padding(x.numpy(), 3, 2)
    assert_close(layer(x.transpose(1, 2)), torch.from_numpy(expected).transpose(1, 2))


def test_average_pooling2d_valid_matches_torch():
    x = torch.randn(2, 3, 8, 8)
    layer = layers.AveragePooling2D((2, 2))
    check_layer(layer, (2, 8, 8, 3))
    assert_close(layer(nhwc(x)), nhwc(F.avg_pool2d(x, 2)))


def test_max_pooling2d_same_pads_with_minus_infinity():
    x = -torch.ones(1, 1, 3, 3)  # all negative: zero padding would win the max
    out = layers.MaxPooling2D((2, 2), padding="same")(nhwc(x))
    assert out.shape == (1, 2, 2, 1) and torch.all(out == -1)


def test_max_pooling1d_matches_torch():
    x = torch.randn(2, 4, 9)
    check_layer(layers.MaxPooling1D(3), (2, 9, 4))
    assert_close(layers.MaxPooling1D(3)(x.transpose(1, 2)), F.max_pool1d(x, 3).transpose(1, 2))


@pytest.mark.parametrize("cls,reduce", [(layers.GlobalAveragePooling2D, np.mean), (layers.GlobalMaxPooling2D, np.max)])
def test_global_pooling2d(cls, reduce):
    x = torch.randn(2, 5, 6, 3)
    out = check_layer(cls(), (2, 5, 6, 3))
    assert out.shape == (2, 3)
    assert_close(cls()(x), torch.from_numpy(reduce(x.numpy(), axis=(1, 2))))
    assert cls(keepdims=True)(x).shape == (2, 1, 1, 3)


@pytest.mark.parametrize("cls,reduce", [(layers.GlobalAveragePooling1D, np.mean), (layers.GlobalMaxPooling1D, np.max)])
def test_global_pooling1d(cls, reduce):
    x = torch.randn(2, 7, 3)
    check_layer(cls(), (2, 7, 3))
    assert_close(cls()(x), torch.from_numpy(reduce(x.numpy(), axis=1)))


@pytest.mark.parametrize("pool", [layers.GlobalMaxPooling1D, layers.GlobalAveragePooling1D])
def test_masked_global_pooling_of_an_empty_sequence_is_zero_with_finite_gradients(pool):
    # regression: an SST-2 phrase that is all punctuation standardizes to no tokens; max pooling gave -inf -> NaN
    x = torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = pool()(x, mask=mask)
    assert torch.all(out[1] == 0) and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[1] == 0)
