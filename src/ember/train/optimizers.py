"""Optimizers by Keras name and with Keras's default hyperparameters, built as torch optimizers.

`Adam(learning_rate=1e-3)` is a spec: `compile` builds the torch optimizer once the model's
parameters exist. A ready `torch.optim.Optimizer` is accepted as it is.

As in Keras, every optimizer also takes `global_clipnorm` (clip the gradients' global norm before each step)
and `gradient_accumulation_steps` (one step per that many batches, on their mean gradient); `Model.fit`
carries them out (`ember.train.stepping`).
"""
import dataclasses

import torch

from ember.train import fused

# torch's fused kernels update all parameters in one call (about 7% of a small CNN's step on CPU); Adam and
# AdamW also call theirs without torch's per-step Python (ember.train.fused: another 3-4%)
_FUSED = {torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad}
_DIRECT = {torch.optim.Adam: fused.Adam, torch.optim.AdamW: fused.AdamW}


@dataclasses.dataclass
class OptimizerSpec:
    learning_rate: float = 0.001
    global_clipnorm: float | None = dataclasses.field(default=None, kw_only=True)
    gradient_accumulation_steps: int = dataclasses.field(default=1, kw_only=True)
    decay_norms_and_biases: bool = dataclasses.field(default=True, kw_only=True)
    layer_lr_decay: float | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if self.global_clipnorm is not None and not self.global_clipnorm > 0:
            raise ValueError(f"global_clipnorm must be positive, got {self.global_clipnorm!r}")
        if self.layer_lr_decay is not None and not 0 < self.layer_lr_decay <= 1:
            raise ValueError(f"layer_lr_decay must be in (0, 1], got {self.layer_lr_decay!r}")
        if not isinstance(self.gradient_accumulation_steps, int) or self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be a whole number >= 1, "
                             f"got {self.gradient_accumulation_steps!r}")

    def torch_class_and_kwargs(self) -> tuple[type, dict]:
        raise NotImplementedError

    def build(self, params, depths=None) -> torch.optim.Optimizer:
        """The torch optimizer over `params`. `depths` (one int per parameter: 0 for the output layer, 1 for
        the layer below, ...) scales each one's learning rate by layer_lr_decay ** depth, when that is set."""
        cls, kwargs = self.torch_class_and_kwargs()
        params = list(params)
        depths = list(depths) if depths is not None and self.layer_lr_decay is not None else [0] * len(params)
        pairs = [(p, d) for p, d in zip(params, depths) if p.requires_grad]
        if cls in _FUSED and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p, _ in pairs):
            kwargs["fused"] = True
            cls = _DIRECT.get(cls, cls)
        spare = bool(kwargs.get("weight_decay")) and not self.decay_norms_and_biases  # biases, norm scales, offsets
        groups: dict[tuple, list] = {}
        for p, depth in pairs:
            groups.setdefault((depth, spare and p.dim() <= 1), []).append(p)
        if len(groups) == 1:
            return cls([p for p, _ in pairs], lr=self.learning_rate, **kwargs)
        decay = self.layer_lr_decay or 1.0
        return cls([{"params": group, "lr": self.learning_rate * decay ** depth, "lr_scale": decay ** depth,
                     **({"weight_decay": 0.0} if spared else {})}
                    for (depth, spared), group in sorted(groups.items())], lr=self.learning_rate, **kwargs)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SGD(OptimizerSpec):
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def torch_class_and_kwargs(self):
        return torch.optim.SGD, {"momentum": self.momentum, "nesterov": self.nesterov,
                                 "weight_decay": self.weight_decay}


@dataclasses.dataclass
class Adam(OptimizerSpec):
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    amsgrad: bool = False
    weight_decay: float = 0.0

    def torch_class_and_kwargs(self):
        return torch.optim.Adam, {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon,
                                  "amsgrad": self.amsgrad, "weight_decay": self.weight_decay}


@dataclasses.dataclass
class AdamW(Adam):
    weight_decay: float = 0.004

    def torch_class_and_kwargs(self):
        return torch.optim.AdamW, {"betas": (self.beta_1, self.beta_2), "eps": self.epsilon,
                                   "amsgrad": self.amsgrad, "weight_decay": self.weight_decay}


@dataclasses.dataclass
class RMSprop(OptimizerSpec):
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1e-7
    centered: bool = False

    def torch_class_and_kwargs(self):
        return torch.optim.RMSprop, {"alpha": self.rho, "momentum": self.momentum, "eps": self.epsilon,
                                     "centered": self.centered}


@dataclasses.dataclass
class Adagrad(OptimizerSpec):
    initial_accumulator_value: float = 0.1
    epsilon: float = 1e-7

    def torch_class_and_kwargs(self):
        return torch.optim.Adagrad, {"initial_accumulator_value": self.initial_accumulator_value,
                                     "eps": self.epsilon}


OPTIMIZERS: dict[str, type[OptimizerSpec]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad,
}


def get(identifier) -> OptimizerSpec | torch.optim.Optimizer:
    """An optimizer spec from a Keras name or spec, or a torch optimizer as it is.

    >>> get("adam")
    Adam(learning_rate=0.001, global_clipnorm=None, gradient_accumulation_steps=1, decay_norms_and_biases=True, layer_lr_decay=None, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False, weight_decay=0.0)
    """
    if isinstance(identifier, (OptimizerSpec, torch.optim.Optimizer)):
        return identifier
    if isinstance(identifier, str):
        try:
            return OPTIMIZERS[identifier.lower()]()
        except KeyError:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {', '.join(OPTIMIZERS)}") from None
    raise TypeError(f"optimizer must be a name, a spec or a torch optimizer, got {type(identifier).__name__}")


def name_of(spec) -> str | None:
    for name, cls in OPTIMIZERS.items():
        if type(spec) is cls:
            return name
    return None


def get_learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The base learning rate (groups with layer-wise decay run at a fraction of it, their "lr_scale")."""
    group = optimizer.param_groups[0]
    return float(group["lr"] / group.get("lr_scale", 1.0))


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = float(value) * group.get("lr_scale", 1.0)
