"""Named model builders that users choose by name: `create_model("seed_cnn", num_classes=10)`."""
from typing import Callable

_BUILDERS: dict[str, Callable] = {}


def register_model(name: str):
    """Decorator adding a builder function to the registry under `name`."""
    def add(builder):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder
    return add


def create_model(name: str, **kwargs):
    """Build the registered model `name` with the builder's keyword arguments."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(sorted(_BUILDERS))}") from None
    return builder(**kwargs)


def list_models() -> list[str]:
    return sorted(_BUILDERS)
