import pytest
import torch

from ember import losses, metrics


def test_accuracy_follows_the_loss():
    probs = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    acc = metrics.get("accuracy", losses.get("sparse_categorical_crossentropy"))
    acc.update_state(torch.tensor([1, 1]), probs)
    assert acc.result().item() == 0.5 and acc.name == "accuracy"
    cat = metrics.get("accuracy", losses.get("categorical_crossentropy"))
    cat.update_state(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), probs)
    assert cat.result().item() == 1.0
    binary = metrics.get("acc", losses.get("binary_crossentropy"))
    binary.update_state(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([[0.7], [0.6], [0.2]]))
    assert binary.result().item() == pytest.approx(1 / 3)


def test_metrics_accumulate_across_batches_with_weights():
    acc = metrics.SparseCategoricalAccuracy()
    acc.update_state(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    acc.update_state(torch.tensor([1]), torch.tensor([[0.0, 1.0]]), sample_weight=torch.tensor([2.0]))
    assert acc.result().item() == pytest.approx(3 / 4)
    acc.reset_state()
    assert acc.result().item() == 0.0


def test_top_k():
    scores = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    top2 = metrics.SparseTopKCategoricalAccuracy(k=2)
    top2.update_state(torch.tensor([1, 0]), scores)
    assert top2.result().item() == 0.5
    top1 = metrics.TopKCategoricalAccuracy(k=1)
    top1.update_state(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), scores)
    assert top1.result().item() == 1.0


def test_results_stay_on_device_as_tensors():
    acc = metrics.get("sparse_categorical_accuracy")
    acc.update_state(torch.tensor([0]), torch.tensor([[1.0, 0.0]]))
    assert isinstance(acc.result(), torch.Tensor)


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="unknown metric 'acuracy'"):
        metrics.get("acuracy")


def test_root_mean_squared_error_is_the_root_of_the_whole_mean_not_a_mean_of_roots():
    from ember.train import metrics as metrics_lib
    metric = metrics_lib.get("root_mean_squared_error")
    y = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    pred = torch.tensor([[1.0], [2.0], [3.0], [8.0]])
    metric.update_state(y[:2], pred[:2])
    metric.update_state(y[2:], pred[2:])
    assert float(metric.result()) == pytest.approx((16 / 4) ** 0.5)


def test_ranking_metrics_read_logits_and_others_read_probabilities():
    import numpy as np
    from ember import layers, models
    torch.manual_seed(0)
    x, y = torch.randn(64, 5).numpy(), torch.randint(0, 8, (64,)).numpy()
    model = models.Sequential([layers.Dense(8, activation="softmax", input_shape=(5,))])
    seen = []

    def probabilities_seen(y_true, y_pred):
        seen.append(float(y_pred.sum(dim=-1).mean()))
        return y_pred.max(dim=-1).values

    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "sparse_top_k_categorical_accuracy"])
    assert model._output_fn is None  # no softmax computed for these two
    _, accuracy, top_k = model.evaluate(x, y, verbose=0)
    probs = model.predict(x, verbose=0)
    assert accuracy == pytest.approx(np.mean(probs.argmax(-1) == y))
    assert top_k == pytest.approx(np.mean((np.argsort(-probs, -1)[:, :5] == y[:, None]).any(-1)))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", probabilities_seen])
    model.evaluate(x, y, verbose=0)
    assert seen and all(s == pytest.approx(1.0) for s in seen)
