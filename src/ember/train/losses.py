"""Losses by their Keras names, called as `loss(y_true, y_pred, sample_weight=None)` like Keras.

Each loss computes a per-sample value and reduces it as Keras's "sum_over_batch_size": the weighted
sum divided by the number of values. Probabilities are clipped to [1e-7, 1 - 1e-7] before the log;
`Model.compile` switches a cross-entropy to `from_logits=True` when the model ends in the matching
softmax/sigmoid, which is both exact and faster.
"""
import dataclasses

import torch
import torch.nn.functional as F

EPSILON = 1e-7


def _match_rank(y_true, y_pred):
    """Keras accepts labels shaped (N,) for predictions shaped (N, 1) and the reverse."""
    if y_true.dim() == y_pred.dim() - 1:
        return y_true.unsqueeze(-1)
    if y_true.dim() == y_pred.dim() + 1 and y_true.shape[-1] == 1:
        return y_true.squeeze(-1)
    return y_true


@dataclasses.dataclass
class Loss:
    from_logits: bool = False

    def __call__(self, y_true, y_pred, sample_weight=None):
        values = self.call(y_true, y_pred)
        if sample_weight is None:
            return values.mean()
        weight = sample_weight.reshape(sample_weight.shape + (1,) * (values.dim() - sample_weight.dim()))
        return (values * weight).sum() / values.numel()

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy between integer labels and class scores on the last axis.

    `ignore_class`: labels to leave out (padding of token sequences); with logits the mean is over the
    labels kept. `label_smoothing` (as torch, an addition to Keras's arguments): the target puts
    1 - label_smoothing on the label and spreads label_smoothing evenly over all classes.
    """
    ignore_class: int | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None or not self.from_logits:
            return super().__call__(y_true, y_pred, sample_weight)
        # the common case in one fused op, forward and backward; classes last, so sequences flatten to rows
        ignore = -100 if self.ignore_class is None else self.ignore_class
        labels = self._labels(y_true, y_pred)
        return F.cross_entropy(y_pred.reshape(-1, y_pred.shape[-1]), labels.reshape(-1), ignore_index=ignore,
                               label_smoothing=self.label_smoothing)

    @staticmethod
    def _labels(y_true, y_pred):
        return (y_true.squeeze(-1) if y_true.dim() == y_pred.dim() else y_true).long()

    def call(self, y_true, y_pred):
        y_true = self._labels(y_true, y_pred)
        if self.from_logits:
            log_probs = torch.log_softmax(y_pred, dim=-1)
        else:
            probs = y_pred / y_pred.sum(dim=-1, keepdim=True)
            log_probs = probs.clamp(EPSILON, 1 - EPSILON).log()
        ignore = -100 if self.ignore_class is None else self.ignore_class
        values = F.nll_loss(log_probs.movedim(-1, 1), y_true, reduction="none", ignore_index=ignore)
        if self.label_smoothing:
            uniform = -log_probs.mean(dim=-1).masked_fill(y_true == ignore, 0.0)
            values = (1 - self.label_smoothing) * values + self.label_smoothing * uniform
        return values


@dataclasses.dataclass
class CategoricalCrossentropy(Loss):
    """Cross-entropy between one-hot (or soft) labels and class scores on the last axis."""
    label_smoothing: float = 0.0

    def call(self, y_true, y_pred):
        y_true = y_true.to(y_pred.dtype)
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]
        if self.from_logits:
            log_probs = torch.log_softmax(y_pred, dim=-1)
        else:
            probs = y_pred / y_pred.sum(dim=-1, keepdim=True)
            log_probs = probs.clamp(EPSILON, 1 - EPSILON).log()
        return -(y_true * log_probs).sum(dim=-1)


@dataclasses.dataclass
class BinaryCrossentropy(Loss):
    """Binary cross-entropy, averaged over the last axis."""
    label_smoothing: float = 0.0

    def call(self, y_true, y_pred):
        y_true = _match_rank(y_true, y_pred).to(y_pred.dtype)
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            values = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        else:
            p = y_pred.clamp(EPSILON, 1 - EPSILON)
            values = -(y_true * p.log() + (1 - y_true) * (1 - p).log())
        return values.mean(dim=-1)


@dataclasses.dataclass
class MeanSquaredError(Loss):
    def call(self, y_true, y_pred):
        return (y_pred - _match_rank(y_true, y_pred).to(y_pred.dtype)).square().mean(dim=-1)


@dataclasses.dataclass
class MeanAbsoluteError(Loss):
    def call(self, y_true, y_pred):
        return (y_pred - _match_rank(y_true, y_pred).to(y_pred.dtype)).abs().mean(dim=-1)


LOSSES: dict[str, type[Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}

# the output activation whose logits each cross-entropy can take directly
LOGIT_ACTIVATIONS = {SparseCategoricalCrossentropy: "softmax", CategoricalCrossentropy: "softmax",
                     BinaryCrossentropy: "sigmoid"}


def get(identifier) -> Loss:
    """A Loss from a Keras name, a Loss instance, or any callable `(y_true, y_pred) -> scalar`.

    >>> get("sparse_categorical_crossentropy")
    SparseCategoricalCrossentropy(from_logits=False, ignore_class=None)
    """
    if isinstance(identifier, str):
        try:
            return LOSSES[identifier]()
        except KeyError:
            raise ValueError(f"unknown loss {identifier!r}; known: {', '.join(sorted(LOSSES))}") from None
    if callable(identifier):
        return identifier
    raise TypeError(f"loss must be a name, a Loss or a callable, got {type(identifier).__name__}")


def name_of(loss) -> str | None:
    """The Keras name to store in a saved compile config, or None for a custom callable."""
    for name, cls in LOSSES.items():
        if type(loss) is cls:
            return name
    return None
