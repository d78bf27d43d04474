"""Reproducible runs: one call seeds Python, NumPy and torch, as `keras.utils.set_random_seed`."""
import random

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed every generator ember draws from: weight init, shuffling, dropout."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
