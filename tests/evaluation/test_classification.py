import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score, log_loss, precision_recall_fscore_support

from ember.evaluation import classification


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.5 * np.eye(4)[y]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probabilities.astype(np.float32)


def test_metrics_agree_with_scikit_learn(predictions):
    y, p = predictions
    metrics = classification.classification_metrics(y, p, ["a", "b", "c", "d"])
    predicted = p.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, zero_division=0)
    assert metrics["test_accuracy"] == pytest.approx((predicted == y).mean())
    assert metrics["test_macro_f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    p64 = p.astype(np.float64)
    assert metrics["test_loss"] == pytest.approx(log_loss(y, p64 / p64.sum(1, keepdims=True)), rel=1e-5)
    assert metrics["confusion_matrix"] == sk_confusion(y, predicted).tolist()
    for i, name in enumerate("abcd"):
        assert metrics["per_class"][name] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]})


def test_a_never_predicted_class_scores_zero_not_nan():
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 1, 1, 1]]
    metrics = classification.classification_metrics(y, p, ["x", "y", "z"])
    assert metrics["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert np.isfinite(metrics["test_loss"])  # log(0) is clipped as Keras clips


def test_macro_f1_counts_a_predicted_class_missing_from_the_labels():
    y = np.array([0, 0, 1, 1])
    p = np.eye(3)[[0, 2, 1, 1]]
    metrics = classification.classification_metrics(y, p, ["a", "b", "c"])
    assert metrics["test_macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))


def test_most_confused_pairs_are_off_diagonal_and_ordered():
    counts = [[5, 3, 0], [1, 9, 0], [0, 7, 2]]
    assert classification.most_confused(counts, ["a", "b", "c"]) == [("c", "b", 7), ("a", "b", 3), ("b", "a", 1)]


def test_wrong_probability_shape_is_an_error():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        classification.classification_metrics([0, 1], np.ones((2, 4)) / 4, ["a", "b", "c"])
