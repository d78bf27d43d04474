"""Classification metrics from labels and predicted probabilities, in NumPy (the numbers metrics.json holds)."""
import numpy as np

# Keras clips probabilities to [eps, 1 - eps] before the log in its cross-entropy
EPSILON = 1e-7


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """counts[i, j]: samples of true class i predicted as class j."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_sample_loss(y_true, probabilities) -> np.ndarray:
    """Cross-entropy of each sample, -log p(true class), computed in float64."""
    p = np.asarray(probabilities, dtype=np.float64)[np.arange(len(y_true)), np.asarray(y_true, dtype=np.int64)]
    return -np.log(np.clip(p, EPSILON, 1.0))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # a class never predicted (or absent) scores 0, as scikit-learn's zero_division=0
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def classification_metrics(y_true, probabilities, class_names) -> dict:
    """test_accuracy, test_loss, test_macro_f1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != num_classes:
        raise ValueError(f"expected probabilities of shape (N, {num_classes}), got {probabilities.shape}")
    y_pred = probabilities.argmax(axis=1)
    counts = confusion_matrix(y_true, y_pred, num_classes)
    hits = np.diag(counts).astype(np.float64)
    precision = _ratio(hits, counts.sum(axis=0).astype(np.float64))
    recall = _ratio(hits, counts.sum(axis=1).astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    support = counts.sum(axis=1)
    present = (support > 0) | (counts.sum(axis=0) > 0)  # classes in the labels or the predictions, as scikit-learn
    return {
        "test_accuracy": float(hits.sum() / max(1, len(y_true))),
        "test_loss": float(per_sample_loss(y_true, probabilities).mean()) if len(y_true) else float("nan"),
        "test_macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "test_samples": int(len(y_true)),
        "per_class": {str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                  "support": int(support[i])} for i, name in enumerate(class_names)},
        "confusion_matrix": counts.tolist(),
    }


def most_confused(counts, class_names, top: int = 5) -> list[tuple[str, str, int]]:
    """The `top` (true, predicted, count) pairs off the diagonal, most frequent first."""
    counts = np.array(counts)
    np.fill_diagonal(counts, 0)
    order = np.argsort(counts, axis=None, kind="stable")[::-1][:top]
    pairs = [(str(class_names[i]), str(class_names[j]), int(counts[i, j]))
             for i, j in zip(*np.unravel_index(order, counts.shape))]
    return [p for p in pairs if p[2] > 0]
