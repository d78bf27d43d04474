"""Optimizers by Keras name and with Keras's default hyperparameters, built as torch optimizers.

`Adam(learning_rate=1e-3)` is a spec: `compile` builds the torch optimizer once the model's
parameters exist. A ready `torch.optim.Optimizer` is accepted as it is.

As in Keras, every optimizer also takes `global_clipnorm` (clip the gradients' global norm before each step)
and `gradient_accumulation_steps` (one step per that many batches, on their mean gradient); `Model.fit`
carries them out (`ember.train.stepping`).
"""
import dataclasses

import torch

# torch's fused kernels update all parameters in one call (about 7% of a small CNN's step on CPU)
_FUSED = {torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad}


@dataclasses.dataclass
class OptimizerSpec:
    learning_rate: float = 0.001
    global_clipnorm: float | None = dataclasses.field(default=None, kw_only=True)
    gradient_accumulation_steps: int = dataclasses.field(default=1, kw_only=True)

    def __post_init__(self):
        if self.global_clipnorm is not None and not self.global_clipnorm > 0:
            raise ValueError(f"global_clipnorm must be positive, got {self.global_clipnorm!r}")
        if not isinstance(self.gradient_accumulation_steps, int) or self.gradient_accumulation_steps < 1:
            raise ValueError(f"gradient_accumulation_steps must be a whole number >= 1, "
                             f"got {self.gradient_accumulation_steps!r}")

    def torch_class_and_kwargs(self) -> tuple[type, dict]:
        raise NotImplementedError

    def build(self, params) -> torch.optim.Optimizer:
        cls, kwargs = self.torch_class_and_kwargs()
        params = [p for p in params if p.requires_grad]
        if cls in _FUSED and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params):
            kwargs["fused"] = True
        return cls(params, lr=self.learning_rate, **kwargs)

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
    Adam(learning_rate=0.001, global_clipnorm=None, gradient_accumulation_steps=1, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False, weight_decay=0.0)
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
    return float(optimizer.param_groups[0]["lr"])


def set_learning_rate(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = float(value)
