"""Metrics accumulated as tensors on the model's device: no host sync per step, `.item()` only to print.

`get("accuracy", loss)` resolves Keras's generic "accuracy" from the loss, as Keras does.
"""
import torch

from ember.train import losses as losses_lib


class Metric:
    """A running weighted mean of per-sample values; subclasses define `values(y_true, y_pred)`."""

    def __init__(self, name: str):
        self.name = name
        self.reset_state()

    def reset_state(self):
        self.total = self.count = None

    @torch.no_grad()
    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.values(y_true, y_pred).float()
        if sample_weight is None:
            total, count = values.sum(), values.numel()  # count stays a Python int: one op fewer per step
        else:
            weight = sample_weight.float().reshape(sample_weight.shape + (1,) * (values.dim() - sample_weight.dim()))
            total, count = (values * weight).sum(), weight.expand_as(values).sum()
        self._accumulate(total, count)

    def _accumulate(self, total: torch.Tensor, count) -> None:
        if self.total is None:
            self.total, self.count = total, count
        else:
            self.total += total
            self.count = self.count + count

    def result(self) -> torch.Tensor:
        if self.total is None:
            return torch.tensor(0.0)
        if isinstance(self.count, torch.Tensor):
            return self.total / self.count.clamp_min(1e-12)
        return self.total / max(self.count, 1)

    def values(self, y_true, y_pred):
        raise NotImplementedError


class Mean(Metric):
    """Mean of the values passed as `y_pred` weighted by `sample_weight`; tracks the loss."""

    def values(self, y_true, y_pred):
        return y_pred.detach().reshape(-1)

    @torch.no_grad()
    def add(self, value: torch.Tensor, weight: int) -> None:
        """Fast path for one scalar per batch (the loss, weighted by batch size): one op per step."""
        if self.total is None:
            self.total, self.count = value * weight, weight
        else:
            self.total.add_(value, alpha=weight)
            self.count += weight


class MeanMetricWrapper(Metric):
    def __init__(self, fn, name: str, **kwargs):
        self.fn, self.kwargs = fn, kwargs
        super().__init__(name)

    def values(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.kwargs)


class RootMeanSquaredError(Metric):
    """sqrt(mean((y_true - y_pred)**2)) over every sample seen, not a mean of per-batch roots (Keras's)."""

    def __init__(self, name: str = "root_mean_squared_error"):
        super().__init__(name)

    def values(self, y_true, y_pred):
        return losses_lib.MeanSquaredError().call(y_true, y_pred)

    def result(self) -> torch.Tensor:
        return super().result().sqrt()


def sparse_categorical_accuracy(y_true, y_pred):
    if y_true.dim() == y_pred.dim():
        y_true = y_true.squeeze(-1)
    return (y_pred.argmax(dim=-1) == y_true).float()


def categorical_accuracy(y_true, y_pred):
    return (y_pred.argmax(dim=-1) == y_true.argmax(dim=-1)).float()


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_true = losses_lib._match_rank(y_true, y_pred)
    return ((y_pred > threshold).to(y_true.dtype) == y_true).float().mean(dim=-1)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    if y_true.dim() == y_pred.dim():
        y_true = y_true.squeeze(-1)
    top = y_pred.topk(min(k, y_pred.shape[-1]), dim=-1).indices
    return (top == y_true.long().unsqueeze(-1)).any(dim=-1).float()


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return sparse_top_k_categorical_accuracy(y_true.argmax(dim=-1), y_pred, k)


def mean_squared_error(y_true, y_pred):
    return losses_lib.MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return losses_lib.MeanAbsoluteError().call(y_true, y_pred)


_RANKING = (sparse_categorical_accuracy, categorical_accuracy, sparse_top_k_categorical_accuracy,
            top_k_categorical_accuracy)


def ranks_only(metric: Metric) -> bool:
    """True if `metric` depends only on the order of the class scores, so that logits and the probabilities a
    softmax makes of them give the same value (where float32 probabilities tie, the larger logit still wins)."""
    return isinstance(metric, MeanMetricWrapper) and metric.fn in _RANKING


METRICS = {
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "binary_accuracy": binary_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "mean_squared_error": mean_squared_error,
    "mse": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    "mae": mean_absolute_error,
}

_ACCURACY_FOR_LOSS = {
    losses_lib.SparseCategoricalCrossentropy: sparse_categorical_accuracy,
    losses_lib.CategoricalCrossentropy: categorical_accuracy,
    losses_lib.BinaryCrossentropy: binary_accuracy,
}


def _generic_accuracy(y_true, y_pred):
    """Keras's rule when the loss does not say: one output -> binary, rank mismatch -> sparse."""
    if y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred)
    if y_true.dim() != y_pred.dim() or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


def SparseCategoricalAccuracy(name="sparse_categorical_accuracy"):
    return MeanMetricWrapper(sparse_categorical_accuracy, name)


def CategoricalAccuracy(name="categorical_accuracy"):
    return MeanMetricWrapper(categorical_accuracy, name)


def BinaryAccuracy(name="binary_accuracy", threshold=0.5):
    return MeanMetricWrapper(binary_accuracy, name, threshold=threshold)


def SparseTopKCategoricalAccuracy(k=5, name="sparse_top_k_categorical_accuracy"):
    return MeanMetricWrapper(sparse_top_k_categorical_accuracy, name, k=k)


def TopKCategoricalAccuracy(k=5, name="top_k_categorical_accuracy"):
    return MeanMetricWrapper(top_k_categorical_accuracy, name, k=k)


def get(identifier, loss=None) -> Metric:
    """A Metric from a Keras name ("accuracy" follows the loss), a Metric, or a function `(y_true, y_pred)`.

    >>> get("accuracy", losses.get("sparse_categorical_crossentropy")).name
    'accuracy'
    """
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        return MeanMetricWrapper(_ACCURACY_FOR_LOSS.get(type(loss), _generic_accuracy), identifier)
    if identifier in ("root_mean_squared_error", "rmse"):
        return RootMeanSquaredError(identifier)
    if isinstance(identifier, str):
        try:
            return MeanMetricWrapper(METRICS[identifier], identifier)
        except KeyError:
            known = ", ".join(sorted(["accuracy", "root_mean_squared_error", *METRICS]))
            raise ValueError(f"unknown metric {identifier!r}; known: {known}") from None
    if callable(identifier):
        return MeanMetricWrapper(identifier, getattr(identifier, "__name__", "metric"))
    raise TypeError(f"metric must be a name, a Metric or a callable, got {type(identifier).__name__}")
