"""ember: Keras-style deep learning on PyTorch.

>>> from ember import layers, models
>>> model = models.Sequential([layers.Input(shape=(784,)), layers.Dense(10, activation="softmax")])
"""
__version__ = "0.1.0"

from ember import datasets, layers, models  # noqa: E402
from ember.models import Model, Sequential  # noqa: E402
from ember.seeding import set_random_seed  # noqa: E402
from ember.train import callbacks, losses, metrics, optimizers  # noqa: E402

__all__ = ["layers", "models", "datasets", "callbacks", "losses", "metrics", "optimizers", "Model", "Sequential",
           "set_random_seed", "__version__"]
