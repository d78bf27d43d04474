import numpy as np
import pytest
import torch
from torch import nn

from ember import callbacks, layers, losses, models, optimizers
from tests.conftest import assert_close


def classic_cnn():
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def blobs(n=512, classes=3, dim=8, seed=0):
    """Linearly separable Gaussian blobs: any working classifier gets them right."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 8, (classes, dim))
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(0, 1, (n, dim))).astype("float32"), y.astype("int64")


def mlp(classes=3, dim=8):
    return models.Sequential([layers.Input(shape=(dim,)), layers.Dense(16, activation="relu"),
                              layers.Dense(classes, activation="softmax")])


def test_classic_cnn_summary_matches_keras(capsys):
    model = classic_cnn()
    model.summary()
    text = capsys.readouterr().out
    for shape in ["(None, 26, 26, 32)", "(None, 13, 13, 32)", "(None, 11, 11, 64)", "(None, 5, 5, 64)",
                  "(None, 3, 3, 64)", "(None, 576)", "(None, 64)", "(None, 10)"]:
        assert shape in text
    assert "Total params: 93,322" in text and "Trainable params: 93,322" in text
    assert model.count_params() == 93322


def test_summary_before_build_says_how_to_build():
    model = models.Sequential([layers.Dense(3)])
    with pytest.raises(ValueError, match="has not been built"):
        model.summary()
    model.build((None, 5))
    assert model.count_params() == 18


def test_list_constructor_equals_add():
    a = models.Sequential([layers.Input(shape=(4,)), layers.Dense(2)])
    b = models.Sequential()
    b.add(layers.Dense(2, input_shape=(4,)))
    assert a.count_params() == b.count_params() == 10


def test_fit_learns_and_reports_history():
    x, y = blobs()
    model = mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert history.epoch == list(range(8))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.95
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.95 and isinstance(loss, float)
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"loss", "accuracy"}
    probs = model.predict(x, verbose=0)
    assert isinstance(probs, np.ndarray) and probs.shape == (512, 3) and probs.dtype == np.float32
    assert_close(probs.sum(axis=1), np.ones(512, dtype=np.float32))


def test_evaluate_without_metrics_returns_a_float():
    x, y = blobs(64)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_logit_path_gives_the_probability_loss_and_stays_finite():
    x, y = blobs(64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    with torch.no_grad():
        model.layers[-1].linear.weight.mul_(1e4)  # saturated softmax: log(p) would be -inf
    xs = (torch.from_numpy(x),)
    fast, _ = model.compute_loss_and_predictions(xs, torch.from_numpy(y), None)
    slow = losses.get("sparse_categorical_crossentropy")(torch.from_numpy(y), model(*xs))
    assert torch.isfinite(fast)
    assert fast > 1.0 and slow <= -np.log(1e-7) + 1e-3  # the clipped loss saturates, the exact one does not
    model.layers[-1].linear.weight.data.div_(1e4)
    fast, _ = model.compute_loss_and_predictions(xs, torch.from_numpy(y), None)
    slow = losses.get("sparse_categorical_crossentropy")(torch.from_numpy(y), model(*xs))
    assert_close(fast, slow, atol=1e-5, rtol=1e-4)


def test_sample_and_class_weights_follow_keras_reduction():
    x, y = blobs(32)
    model = mlp()
    model.compile("sgd", "sparse_categorical_crossentropy")
    per_sample = losses.SparseCategoricalCrossentropy().call(torch.from_numpy(y), torch.from_numpy(model.predict(x, verbose=0)))
    w = np.linspace(0.5, 2, 32).astype("float32")
    got = model.evaluate(x, y, sample_weight=w, batch_size=32, verbose=0)
    assert got == pytest.approx(float((per_sample * torch.from_numpy(w)).sum() / 32), rel=1e-5)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model.train_on_batch(x, y, class_weight={0: 2.0, 1: 1.0, 2: 0.5})
    expected = (per_sample * torch.tensor([2.0, 1.0, 0.5])[torch.from_numpy(y)]).mean()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_and_test_on_batch_return_keras_shapes():
    x, y = blobs(32)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, y)
    assert 0 <= acc <= 1 and loss > 0
    assert model.test_on_batch(x, y, return_dict=True).keys() == {"loss", "accuracy"}
    assert model.predict_on_batch(x).shape == (32, 3)


def test_validation_data_and_shapes_mismatch_error():
    x, y = blobs(64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=1, verbose=0)
    assert "val_accuracy" in history.history
    with pytest.raises(ValueError, match="x has 64, y has 63"):
        model.fit(x, y[:-1], verbose=0)


def test_fit_before_compile_is_a_clear_error():
    with pytest.raises(RuntimeError, match="must be compiled"):
        mlp().fit(*blobs(8), verbose=0)


def test_subclassed_model_trains_and_builds_lazily():
    class MLP(models.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(16, activation="relu")
            self.out = layers.Dense(3)

        def forward(self, x):
            return self.out(self.hidden(x))

    x, y = blobs()
    model = MLP()
    model.compile("adam", losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=10, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95
    assert model.count_params() == 8 * 16 + 16 + 16 * 3 + 3


def test_plain_torch_modules_train_inside_sequential():
    x, y = blobs()
    model = models.Sequential([nn.Linear(8, 16), nn.ReLU(), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95


@pytest.mark.parametrize("loss,metric,targets", [
    ("categorical_crossentropy", "accuracy", lambda y: np.eye(3, dtype="float32")[y]),
    ("sparse_categorical_crossentropy", "sparse_top_k_categorical_accuracy", lambda y: y),
])
def test_other_losses_and_metrics_train(loss, metric, targets):
    x, y = blobs()
    model = mlp()
    model.compile("adam", loss, metrics=[metric])
    model.fit(x, targets(y), epochs=8, verbose=0)
    assert model.evaluate(x, targets(y), verbose=0)[1] > 0.95


def test_binary_classification_with_sigmoid():
    x, y = blobs(classes=2)
    model = models.Sequential([layers.Input(shape=(8,)), layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=15, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] > 0.95


def test_regression_with_mse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")
    model = models.Sequential([layers.Input(shape=(4,)), layers.Dense(1)])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.05), loss="mse", metrics=["mae"])
    model.fit(x, y, epochs=60, verbose=0, batch_size=16)
    loss, mae = model.evaluate(x, y, verbose=0)
    assert loss < 0.01 and mae < 0.1


def test_progress_output_looks_like_keras(capsys):
    x, y = blobs(64)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, validation_split=0.25)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "2/2 ━" in out and "s/step - loss:" in out and "- accuracy:" in out and "- val_loss:" in out


def test_callback_hooks_and_stop_training():
    seen = []

    class Recorder(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(logs["loss"]))
            if batch == 2:
                self.model.stop_training = True

    x, y = blobs(256)
    model = mlp()
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=5, callbacks=[Recorder()], verbose=0)
    assert len(seen) == 3 and len(history.epoch) == 1


def _layer_by_layer(model, x):
    for layer in model.layers:
        x = layer(x)
    return x


def assert_same_as_layer_by_layer(model, x, weights):
    """The model's planned forward gives the outputs and gradients of calling its layers one by one."""
    results = []
    for forward in (model, lambda t: _layer_by_layer(model, t)):
        model.zero_grad()
        inputs = x.clone().requires_grad_()
        out = forward(inputs)
        (out * weights).sum().backward()
        results.append([out.detach(), inputs.grad] + [p.grad.clone() for p in model.parameters()])
    for planned, naive in zip(*results):
        assert_close(planned, naive, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_pooling_before_the_activation_changes_nothing(activation):
    model = models.Sequential([layers.Input(shape=(12, 12, 2)), layers.Conv2D(4, 3, activation=activation),
                               layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    assert [len(step) for step in model.steps()] == [2, 1, 1]  # conv+pool run as one step
    x = torch.randn(5, 12, 12, 2) - 0.5  # plenty of negative pre-activations and ties at zero
    weights = torch.randn(5, 3)
    assert_same_as_layer_by_layer(model, x, weights)


def test_convolutions_and_poolings_run_channels_first_in_one_step():
    model = models.Sequential([layers.Input(shape=(13, 11, 3)), layers.Conv2D(4, 3, activation="relu"),
                               layers.MaxPooling2D(2), layers.Conv2D(5, 3, strides=2, padding="same"),
                               layers.AveragePooling2D(2, padding="same"), layers.Conv2D(6, 1, activation="tanh"),
                               layers.Flatten(), layers.Dense(3, activation="softmax")])
    run, *rest = model.steps()
    assert len(run) == 5 and [len(step) for step in rest] == [1, 1]  # one step: 5 layers, 2 moves of the channels
    x = torch.randn(4, 13, 11, 3)
    weights = torch.randn(4, 3)
    assert_same_as_layer_by_layer(model, x, weights)


def test_a_hooked_layer_is_called_as_a_module():
    model = classic_cnn()
    seen = []
    handle = model.layers[2].register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    model(torch.randn(2, 28, 28, 1))
    assert seen == [(2, 11, 11, 64)]  # the hook saw the layer's own (channels-last) output
    handle.remove()
    model(torch.randn(2, 28, 28, 1))
    assert len(seen) == 1
    lows = []
    model.layers[1].register_forward_hook(lambda module, args, out: lows.append(float(args[0].detach().min())))
    model(torch.randn(2, 28, 28, 1))
    assert lows and lows[0] >= 0  # the pooling after a ReLU convolution sees activated values, as written


def test_a_subclassed_convolution_keeps_its_own_forward():
    class Doubled(layers.Conv2D):
        def forward(self, x):
            return 2 * super().forward(x)

    model = models.Sequential([layers.Input((8, 8, 1)), Doubled(2, 3), layers.MaxPooling2D(2), layers.Conv2D(2, 3),
                               layers.Flatten(), layers.Dense(2)])
    x = torch.randn(3, 8, 8, 1)
    assert_close(model(x), _layer_by_layer(model, x))
