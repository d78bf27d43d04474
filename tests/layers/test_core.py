import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember import layers
from ember.layers.activations import ACTIVATIONS
from tests.conftest import assert_close
from tests.layers.harness import check_layer


def test_dense_matches_linear_with_copied_weights():
    dense = layers.Dense(5, activation="tanh")
    out = check_layer(dense, (4, 3))
    ref = nn.Linear(3, 5)
    ref.load_state_dict({"weight": dense.linear.weight, "bias": dense.linear.bias})
    x = torch.randn(4, 3)
    assert_close(dense(x), torch.tanh(ref(x)))
    assert out.shape == (4, 5)


def test_dense_applies_to_last_axis_and_keras_init():
    dense = layers.Dense(64)
    y = dense(torch.randn(2, 7, 576))
    assert y.shape == (2, 7, 64) and dense.output_shape == (None, 7, 64)
    limit = np.sqrt(6 / (576 + 64))
    assert dense.linear.weight.abs().max() <= limit and dense.linear.weight.abs().max() > 0.9 * limit
    assert torch.all(dense.linear.bias == 0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_layer(name):
    reference = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softmax": lambda t: t.softmax(-1),
                 "linear": lambda t: t, "gelu": F.gelu, "elu": F.elu, "selu": F.selu, "softplus": F.softplus,
                 "silu": F.silu, "swish": F.silu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2)}
    x = torch.randn(3, 4)
    out = check_layer(layers.Activation(name), (3, 4))
    assert out.shape == (3, 4)
    if name in reference:
        assert_close(layers.Activation(name)(x), reference[name](x))


def test_unknown_activation_names_it():
    with pytest.raises(ValueError, match="unknown activation 'rleu'"):
        layers.Dense(3, activation="rleu")


def test_flatten_keeps_channels_last_order():
    x = torch.arange(2 * 3 * 3 * 2, dtype=torch.float32).reshape(2, 3, 3, 2)
    check_layer(layers.Flatten(), (2, 3, 3, 2))
    assert_close(layers.Flatten()(x), torch.from_numpy(x.numpy().reshape(2, -1)))


def test_reshape_and_bad_reshape():
    out = check_layer(layers.Reshape((4, -1)), (2, 3, 4))
    assert out.shape == (2, 4, 3)
    with pytest.raises(ValueError, match="cannot reshape"):
        layers.Reshape((5,))(torch.zeros(2, 3, 4))


def test_dropout_only_in_training():
    layer = layers.Dropout(0.5)
    x = torch.ones(1000)
    layer.train()
    y = layer(x)
    assert 0.4 < (y == 0).float().mean() < 0.6 and set(y.unique().tolist()) <= {0.0, 2.0}
    layer.eval()
    assert torch.equal(layer(x), x)
    check_layer(layers.Dropout(0.2), (4, 5))


def test_rescaling_casts_integers():
    layer = layers.Rescaling(1 / 255, offset=-0.5)
    y = layer(torch.tensor([[0, 255]], dtype=torch.uint8))
    assert y.dtype == torch.float32
    assert_close(y, torch.tensor([[-0.5, 0.5]]))
    check_layer(layers.Rescaling(2.0), (2, 3))


def test_input_declares_shape():
    layer = layers.Input(shape=(28, 28, 1))
    assert layer.shape == (28, 28, 1)


def test_integer_inputs_compute_in_float_like_keras():
    images = torch.randint(0, 256, (2, 5, 5, 1), dtype=torch.uint8)
    assert layers.Conv2D(2, 3)(images).dtype == torch.float32
    assert layers.Dense(3)(images.flatten(1)).dtype == torch.float32


def test_unsupported_dtype_is_an_error_not_ignored():
    with pytest.raises(ValueError, match="only float32"):
        layers.Dense(3, dtype="float16")
