import torch
from torch import nn

from ember import layers
from tests.conftest import assert_close
from tests.layers.harness import check_layer


def test_batchnorm_matches_torch_in_training_and_inference():
    bn = layers.BatchNormalization()
    check_layer(bn, (4, 5, 5, 3))
    bn = layers.BatchNormalization()
    ref = nn.BatchNorm2d(3, eps=1e-3, momentum=0.01)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    bn.train()
    ref.train()
    out = bn(x.permute(0, 2, 3, 1).contiguous())
    assert_close(out, ref(x).permute(0, 2, 3, 1))
    assert_close(bn.moving_mean, ref.running_mean)
    assert_close(bn.moving_variance, ref.running_var)
    with torch.no_grad():
        bn.gamma.fill_(2.0)
        ref.weight.fill_(2.0)
    bn.eval()
    ref.eval()
    assert_close(bn(x.permute(0, 2, 3, 1).contiguous()), ref(x).permute(0, 2, 3, 1))


def test_batchnorm_counts_moving_statistics_as_non_trainable():
    bn = layers.BatchNormalization()
    bn(torch.randn(4, 16))
    assert bn.count_params() == 64  # gamma, beta, moving mean, moving variance as in Keras
    assert sum(p.numel() for p in bn.parameters()) == 32


def test_batchnorm_on_sequences_and_axis_1():
    out = check_layer(layers.BatchNormalization(), (4, 7, 3))
    assert out.shape == (4, 7, 3)
    ref = nn.BatchNorm1d(5, eps=1e-3, momentum=0.01)
    bn = layers.BatchNormalization(axis=1)
    x = torch.randn(6, 5, 4)
    assert_close(bn(x), ref(x))


def test_layer_normalization_matches_torch():
    layer = layers.LayerNormalization()
    x = torch.randn(3, 5, 8)
    check_layer(layer, (3, 5, 8))
    ref = nn.LayerNorm(8, eps=1e-3)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(8))
        ref.bias.copy_(torch.randn(8))
        layer.gamma.copy_(ref.weight)
        layer.beta.copy_(ref.bias)
        assert_close(layer(x), ref(x))
    assert layer.count_params() == 16
