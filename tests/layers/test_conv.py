import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember import layers
from ember.layers.spatial import same_padding
from tests.conftest import assert_close
from tests.layers.harness import check_layer


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def nchw(x):
    return x.permute(0, 3, 1, 2)


def test_conv2d_valid_matches_torch_with_copied_weights():
    conv = layers.Conv2D(8, (3, 3), activation="relu")
    check_layer(conv, (2, 10, 10, 3))
    ref = nn.Conv2d(3, 8, 3)
    ref.load_state_dict(conv.conv.state_dict())
    x = torch.randn(2, 3, 10, 10)
    out = conv(nhwc(x).contiguous())
    assert out.shape == (2, 8, 8, 8) and conv.output_shape == (None, 8, 8, 8)
    assert_close(out, nhwc(F.relu(ref(x))))


@pytest.mark.parametrize("size,kernel,stride,expected_pads", [
    (28, 3, 1, [1, 1]), (28, 3, 2, [0, 1]), (5, 3, 2, [1, 1]), (6, 3, 2, [0, 1]), (7, 4, 1, [1, 2]),
])
def test_same_padding_follows_tensorflow(size, kernel, stride, expected_pads):
    assert same_padding((size,), (kernel,), (stride,), (1,)) == expected_pads


@pytest.mark.parametrize("size,stride", [(28, 1), (28, 2), (7, 2), (9, 3)])
def test_conv2d_same_matches_explicitly_padded_torch(size, stride):
    conv = layers.Conv2D(4, 3, strides=stride, padding="same")
    check_layer(conv, (2, size, size, 2))
    x = torch.randn(2, 2, size, size)
    pads = same_padding((size, size), (3, 3), (stride, stride), (1, 1))
    ref = F.conv2d(F.pad(x, pads), conv.conv.weight, conv.conv.bias, stride=stride)
    out = conv(nhwc(x).contiguous())
    assert out.shape[1] == -(-size // stride)
    assert_close(out, nhwc(ref))


def test_conv2d_runs_channels_last_and_keras_param_count():
    conv = layers.Conv2D(32, (3, 3))
    out = conv(torch.randn(4, 28, 28, 1))
    assert conv.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous()  # NHWC out without a copy
    assert conv.count_params() == 320


def test_conv2d_channels_first_and_dilation():
    conv = layers.Conv2D(4, 3, data_format="channels_first", dilation_rate=2)
    out = check_layer(conv, (1, 3, 12, 12))
    assert out.shape == (1, 4, 8, 8)


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
def test_conv1d_matches_torch(padding):
    conv = layers.Conv1D(6, 3, padding=padding)
    out = check_layer(conv, (2, 10, 4))
    assert out.shape == (2, 8 if padding == "valid" else 10, 6)
    x = torch.randn(2, 4, 10)
    pad = {"valid": [0, 0], "same": [1, 1], "causal": [2, 0]}[padding]
    ref = F.conv1d(F.pad(x, pad), conv.conv.weight, conv.conv.bias)
    assert_close(conv(x.transpose(1, 2)), ref.transpose(1, 2))


def test_bad_conv_arguments_are_named():
    with pytest.raises(ValueError, match="kernel_size"):
        layers.Conv2D(3, (3, 3, 3))
    with pytest.raises(ValueError, match="padding"):
        layers.Conv2D(3, 3, padding="full")
