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
