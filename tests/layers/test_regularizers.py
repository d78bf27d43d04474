"""Keras-style weight penalties: their values, their configs, and that training adds them to the loss."""
import numpy as np
import pytest
import torch

from ember import layers, models
from ember.layers import regularizers
from tests.conftest import assert_close


def test_penalty_values_match_their_formulas():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    assert_close(regularizers.L2(0.1)(w), 0.1 * (1 + 4 + 0.25))
    assert_close(regularizers.L1(0.1)(w), 0.1 * 3.5)
    assert_close(regularizers.get("l1_l2")(w), 0.01 * 3.5 + 0.01 * 5.25)
    assert regularizers.get("l2").l2 == 0.01  # Keras's default factor


@pytest.mark.parametrize("bad, error", [("l3", ValueError), ({"l2": 1, "l4": 2}, ValueError), (3, TypeError),
                                        ({"l2": -1.0}, ValueError)])
def test_bad_regularizers_are_refused(bad, error):
    with pytest.raises(error):
        regularizers.get(bad)


def test_layer_configs_carry_their_regularizers():
    dense = layers.Dense(3, kernel_regularizer=regularizers.L2(1e-3), bias_regularizer="l1")
    embedding = layers.Embedding(10, 4, embeddings_regularizer={"l2": 1e-4})
    for layer in (dense, embedding):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    assert dense.get_config()["kernel_regularizer"] == {"l1": 0.0, "l2": 1e-3}
    assert embedding.get_config()["embeddings_regularizer"] == {"l1": 0.0, "l2": 1e-4}


def test_the_training_loss_adds_the_penalties_as_keras_model_losses():
    model = models.Sequential([layers.Embedding(6, 3, embeddings_regularizer={"l2": 0.5}), layers.Flatten(),
                               layers.Dense(1, kernel_regularizer={"l1": 0.25})])
    model.compile("sgd", "mse")
    x, y = np.array([[1, 2], [3, 4]]), np.array([[1.0], [2.0]], dtype="float32")
    model.build((None, 2))
    with torch.no_grad():
        mse = ((model(torch.as_tensor(x)) - torch.as_tensor(y)) ** 2).mean()
        penalty = 0.5 * model.layers[0].embeddings.square().sum() + 0.25 * model.layers[2].linear.weight.abs().sum()
    assert len(model.losses) == 2
    assert_close(sum(model.losses), penalty)
    assert_close(model.evaluate(x, y, verbose=0), mse + penalty)


def test_a_model_without_regularizers_has_no_penalties():
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    assert model.losses == []


def test_an_sgd_step_shrinks_weights_by_the_l2_gradient():
    model = models.Sequential([layers.Dense(1, use_bias=False, kernel_regularizer={"l2": 0.1}, input_shape=(2,))])
    model.compile(optimizer="sgd", loss="mse")
    model.build((None, 2))
    with torch.no_grad():
        model.layers[0].linear.weight.copy_(torch.tensor([[1.0, -2.0]]))
    model.train_on_batch(np.zeros((4, 2), dtype="float32"), np.zeros((4, 1), dtype="float32"))  # zero data loss
    lr = model.optimizer.param_groups[0]["lr"]
    assert_close(model.layers[0].linear.weight, torch.tensor([[1.0, -2.0]]) * (1 - 2 * lr * 0.1))


def test_a_layer_added_after_training_brings_its_penalty():
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    model.add(layers.Dense(1, kernel_regularizer={"l2": 100.0}))
    loss = model.train_on_batch(np.ones((4, 3)), np.ones((4, 1)))
    assert len(model.losses) == 1 and loss > 1.0  # the penalty (100 * sum(w**2)) dominates


def test_fit_takes_an_array_data_without_separate_targets():
    from ember.data import ArrayData
    model = models.Sequential([layers.Dense(1, input_shape=(3,))])
    model.compile("sgd", "mse")
    data = ArrayData(np.ones((8, 3)), np.ones((8, 1)))
    assert model.fit(data, epochs=1, verbose=0).history["loss"]
    with pytest.raises(ValueError, match="pass y=None"):
        model.fit(data, np.ones((8, 1)), verbose=0)


def test_an_activity_regularizer_penalizes_outputs_per_sample_as_tf_keras_does():
    dense = layers.Dense(2, activity_regularizer={"l2": 0.5}, input_shape=(3,))
    model = models.Sequential([dense])
    model.compile("sgd", "mse")
    x, y = np.arange(12, dtype="float32").reshape(4, 3) / 10, np.ones((4, 2), dtype="float32")
    model.build((None, 3))
    with torch.no_grad():
        out = model(torch.as_tensor(x))
        expected = ((out - torch.as_tensor(y)) ** 2).mean() + 0.5 * out.square().sum() / 4  # divided by the batch
    assert_close(model.evaluate(x, y, verbose=0), expected)
    assert dense.activity_losses is None  # collected only while the model computes a loss
    model(torch.as_tensor(x))
    assert dense.activity_losses is None and model.losses == []  # weight penalties only, as Keras's model.losses
    assert dense.get_config()["activity_regularizer"] == {"l1": 0.0, "l2": 0.5}
    assert "activity_regularizer" not in layers.Dense(2).get_config()


def test_activity_penalties_reach_the_loss_on_every_path_and_stop_with_it():
    # a penalized Conv2D before max pooling is not fused into pool-first; a penalized softmax output is not
    # cut to logits: both penalties reach the loss
    conv = layers.Conv2D(2, 3, activation="relu", activity_regularizer={"l2": 10.0})
    out = layers.Dense(3, activation="softmax", activity_regularizer={"l2": 10.0})
    model = models.Sequential([layers.Input((6, 6, 1)), conv, layers.MaxPooling2D(2), layers.Flatten(), out])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((4, 6, 6, 1), dtype=np.float32), np.array([0, 1, 2, 0])
    with torch.no_grad():
        hidden = conv(torch.as_tensor(x))
        probs = model(torch.as_tensor(x))
        expected = (torch.nn.functional.nll_loss(probs.log(), torch.as_tensor(y))
                    + 10.0 * (hidden.square().sum() + probs.square().sum()) / 4)
    assert_close(model.evaluate(x, y, verbose=0), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception):
        model.evaluate(x, np.array([0, 1, 2, 7]), verbose=0)  # a bad label raises mid-loss
    assert conv.activity_losses is None and out.activity_losses is None  # collection closed all the same


def test_a_layer_with_several_outputs_is_penalized_on_each():
    penalty = regularizers.activity_penalty(regularizers.L2(1.0), (torch.ones(2, 3), [torch.full((2, 1), 2.0)]))
    assert_close(penalty, torch.tensor(3.0 + 4.0))  # (6 * 1 + 2 * 4) / batch 2


def test_a_model_refuses_an_activity_regularizer_of_its_own():
    class Net(models.Model):
        def __init__(self):
            super().__init__(activity_regularizer="l2")  # Model.__call__ is not a layer's: it would be ignored
    with pytest.raises(ValueError, match="give it to the layers"):
        Net()


def test_pop_drops_the_popped_layers_penalty_and_plan():
    model = models.Sequential([layers.Dense(2, input_shape=(3,)), layers.Dense(1, kernel_regularizer={"l2": 100.0})])
    model.compile("sgd", "mse")
    x = np.ones((4, 3), dtype="float32")
    model.fit(x, np.ones((4, 1), dtype="float32"), verbose=0)
    model.pop()
    model.add(layers.Dense(5))
    assert model.predict(x, verbose=0).shape == (4, 5)
    assert model.losses == []
