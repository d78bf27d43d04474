import pytest
import torch

from ember import optimizers


def params():
    return [torch.nn.Parameter(torch.randn(3))]


@pytest.mark.parametrize("name,cls,lr,extra", [
    ("sgd", torch.optim.SGD, 0.01, {"momentum": 0.0}),
    ("adam", torch.optim.Adam, 0.001, {"eps": 1e-7, "betas": (0.9, 0.999)}),
    ("adamw", torch.optim.AdamW, 0.001, {"eps": 1e-7, "weight_decay": 0.004}),
    ("rmsprop", torch.optim.RMSprop, 0.001, {"alpha": 0.9, "eps": 1e-7}),
    ("adagrad", torch.optim.Adagrad, 0.001, {"initial_accumulator_value": 0.1, "eps": 1e-7}),
])
def test_keras_defaults(name, cls, lr, extra):
    optimizer = optimizers.get(name).build(params())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == lr
    for key, value in extra.items():
        assert tuple(group[key]) == value if isinstance(value, tuple) else group[key] == value


def test_fused_kernels_where_torch_has_them():
    assert optimizers.get("adam").build(params()).param_groups[0]["fused"] is True


def test_specs_and_torch_optimizers_are_accepted():
    spec = optimizers.Adam(learning_rate=0.01)
    assert optimizers.get(spec) is spec
    ready = torch.optim.SGD(params(), lr=0.1)
    assert optimizers.get(ready) is ready
    optimizers.set_learning_rate(ready, 0.5)
    assert optimizers.get_learning_rate(ready) == 0.5


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'adan'"):
        optimizers.get("adan")
