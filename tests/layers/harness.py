"""The one shared layer check: build -> forward -> backward -> config round trip -> weights round trip."""
import torch

from ember.layers import LAYERS


def check_layer(layer, input_shape, *, dtype=torch.float32):
    """Run `layer` through the life every layer must survive; returns its output on a random input."""
    if dtype.is_floating_point:
        x = torch.randn(input_shape, dtype=dtype, requires_grad=True)
    else:  # token ids
        x = torch.randint(0, 8, input_shape, dtype=dtype)
    layer.train()
    out = layer(x)
    assert layer.built and layer.output_shape == (None, *out.shape[1:])
    if any(p.requires_grad for p in layer.parameters()) or x.requires_grad:
        out.float().sum().backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"no gradient for {name}"
    layer.eval()
    with torch.no_grad():
        expected = layer(x)
    config = layer.get_config()
    clone = LAYERS[type(layer).__name__].from_config(config)
    assert clone.get_config() == config
    clone.eval()
    with torch.no_grad():
        clone(x)  # build
        clone.load_state_dict(layer.state_dict())
        torch.testing.assert_close(clone(x), expected)
    return expected
