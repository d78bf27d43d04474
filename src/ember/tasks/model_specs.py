"""Models named in a config: a registered builder (`model.name` + `model.args`) or a list of ember layers."""
import inspect
from typing import Any

from pydantic import Field, field_validator, model_validator

from ember import layers as ember_layers
from ember.models import create_model, list_models
from ember.tasks.config import ConfigError, Section, did_you_mean


class ModelSpec(Section):
    name: str | None = Field(None, description="a registered model: " + ", ".join(list_models()))
    args: dict[str, Any] = Field({}, description="keyword arguments for the registered model's builder")
    layers: list[str | dict[str, Any]] | None = Field(None, description="a Sequential as a list of ember layers")

    @field_validator("name")
    @classmethod
    def _registered(cls, name):
        if name is not None and name not in list_models():
            raise ValueError(f"unknown model {name!r}{did_you_mean(name, list_models())}; "
                             f"registered: {', '.join(list_models())}")
        return name

    @model_validator(mode="after")
    def _name_or_layers(self):
        if (self.name is None) == (self.layers is None):
            raise ValueError("set exactly one of model.name (a registered model) and model.layers (a list of layers)")
        if self.layers is not None and self.args:
            raise ValueError("model.args applies to model.name only; give layer arguments in model.layers")
        return self



class AugmentedModelSpec(ModelSpec):
    augmentation: list[str | dict[str, Any]] = Field([], description="training-only augmentation layers put in "
                                                     "front of the model (RandomFlip, RandomRotation, MixUp, "
                                                     "TokenAugmentation, ...)")


def _init_arguments(cls) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}


# layers a config may name: ember's layers and Keras's aliases (MaxPool2D, ...); the input comes from the data
LAYER_NAMES = {name: getattr(ember_layers, name) for name in ember_layers.__all__
               if isinstance(getattr(ember_layers, name), type) and name not in ("Layer", "InputLayer")}


def layer_from_spec(spec, index: int, where: str | None = None):
    """"Flatten" or {"Conv2D": {"filters": 32, "kernel_size": 3}} -> the layer."""
    where = where or f"model.layers[{index}]"
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, dict) and len(spec) == 1:
        name, kwargs = next(iter(spec.items()))
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{where}: arguments of {name} must be a mapping, got {kwargs!r}")
    else:
        raise ConfigError(f"{where}: write a layer as a name (Flatten) or {{Name: {{argument: value}}}}, got {spec!r}")
    if name not in LAYER_NAMES:
        raise ConfigError(f"{where}: unknown layer {name!r}{did_you_mean(name, LAYER_NAMES)}")
    cls = LAYER_NAMES[name]
    allowed = _init_arguments(cls)
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(f"{where}: {name} has no argument {key!r}{did_you_mean(key, allowed)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {name}: {e}") from None


def with_augmentation(model, specs: list, what: str):
    """`model` (a Sequential) with the augmentation layers of `specs` in front; they are the identity except
    in training, so evaluation, export and serving see the model alone."""
    if not specs:
        return model
    from ember.layers import AUGMENTATION_LAYERS
    from ember.models import Sequential
    augmentation = [_augmentation_layer(spec, i, AUGMENTATION_LAYERS) for i, spec in enumerate(specs)]
    if not isinstance(model, Sequential):
        raise ConfigError(f"model.augmentation: {what} is not a Sequential, so no layers can go in front of it")
    front = Sequential([*augmentation, *model.layers], name=model.name)
    if model.input_shape is not None:
        front._set_input(model.input_shape, str(model.input_dtype)[len("torch."):])
    return front


def _augmentation_layer(spec, index: int, allowed: tuple):
    layer = layer_from_spec(spec, index, where=f"model.augmentation[{index}]")
    if not isinstance(layer, allowed):
        raise ConfigError(f"model.augmentation[{index}]: {type(layer).__name__} is not an augmentation layer "
                          f"({', '.join(cls.__name__ for cls in allowed)})")
    return layer


def create_registered(name: str, args: dict | None, **required):
    """`create_model(name, **required, **args)`, a wrong argument reported against model.args."""
    try:
        return create_model(name, **required, **(args or {}))
    except TypeError as e:
        raise ConfigError(f"model.args: {name}: {e}") from None


def finish_classifier(model, what: str, num_classes: int):
    """Check a built model outputs `num_classes` scores; end it in softmax if it ends in a linear layer."""
    outputs = model.output_shape
    if outputs is None or len(outputs) != 2 or outputs[1] != num_classes:
        raise ConfigError(f"{what} outputs shape {outputs}, but the data has {num_classes} classes: "
                          f"end with Dense: {{units: {num_classes}}}")
    final = model.output_activation()
    if final in (None, "linear"):
        model.add(ember_layers.Activation("softmax"))
    elif final != "softmax":
        raise ConfigError(f"{what} ends in a {final!r} activation; a classifier ends in softmax (or in a linear "
                          "layer, which gets one)")
    return model
