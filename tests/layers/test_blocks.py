import torch
from torch import nn

from ember import layers
from tests.conftest import assert_close
from tests.layers.harness import check_layer


class TorchBasicBlock(nn.Module):
    """The reference: torchvision's BasicBlock, written out (NCHW)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-3))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + (x if self.down is None else self.down(x)))


def _copy(block, ref):
    pairs = [(block.conv1.conv, ref.conv1), (block.conv2.conv, ref.conv2)]
    bns = [(block.bn1, ref.bn1), (block.bn2, ref.bn2)]
    if ref.down is not None:
        pairs.append((block.shortcut_conv.conv, ref.down[0]))
        bns.append((block.shortcut_bn, ref.down[1]))
    with torch.no_grad():
        for ours, theirs in pairs:
            theirs.weight.copy_(ours.weight)
        for ours, theirs in bns:
            theirs.weight.copy_(ours.gamma)
            theirs.bias.copy_(ours.beta)
            theirs.running_mean.copy_(ours.moving_mean)
            theirs.running_var.copy_(ours.moving_variance)


def test_residual_block_matches_the_torch_basic_block():
    for cin, cout, stride in [(8, 8, 1), (8, 16, 2), (6, 12, 1)]:
        block = layers.ResidualBlock(cout, strides=stride)
        check_layer(block, (2, 9, 9, cin))
        ref = TorchBasicBlock(cin, cout, stride)
        _copy(block, ref)
        block.eval(), ref.eval()
        x = torch.randn(2, 9, 9, cin)
        with torch.no_grad():
            expected = ref(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            assert_close(block(x), expected, atol=1e-5, rtol=1e-4)
