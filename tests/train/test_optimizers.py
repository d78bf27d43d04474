import pytest
import torch

from ember import models, optimizers


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
    assert isinstance(optimizer, cls)  # Adam and AdamW: ember.train.fused's subclasses
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


def test_weight_decay_can_spare_biases_and_normalization():
    from ember import layers
    model = models.Sequential([layers.Dense(4, input_shape=(3,)), layers.LayerNormalization(), layers.Dense(2)])
    spec = optimizers.AdamW(weight_decay=0.01, decay_norms_and_biases=False)
    groups = spec.build(model.parameters()).param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert [p.dim() for p in groups[0]["params"]] == [2, 2] and all(p.dim() == 1 for p in groups[1]["params"])
    assert len(optimizers.AdamW(weight_decay=0.01).build(model.parameters()).param_groups) == 1  # Keras: all decay


def test_layer_wise_learning_rate_decay_scales_each_layer_below_the_output():
    from ember import layers
    model = models.Sequential([layers.Dense(4, input_shape=(3,)), layers.Dropout(0.1), layers.Dense(4),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizers.AdamW(1e-3, layer_lr_decay=0.5, weight_decay=0.01, decay_norms_and_biases=False),
                  "sparse_categorical_crossentropy")
    groups = model.optimizer.param_groups
    rates = sorted({g["lr"] for g in groups}, reverse=True)
    assert rates == pytest.approx([1e-3, 5e-4, 2.5e-4])
    first_kernel = model.layers[0].linear.weight
    assert next(g for g in groups if any(p is first_kernel for p in g["params"]))["lr"] == pytest.approx(2.5e-4)
    optimizers.set_learning_rate(model.optimizer, 1e-2)  # schedules set the base rate; the ratios stay
    assert optimizers.get_learning_rate(model.optimizer) == pytest.approx(1e-2)
    assert sorted({g["lr"] for g in groups}, reverse=True) == pytest.approx([1e-2, 5e-3, 2.5e-3])
