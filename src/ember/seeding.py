"""Reproducible runs: one call seeds Python, NumPy and torch, as `keras.utils.set_random_seed`."""
import contextlib
import os
import random

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    """Seed every generator ember draws from: weight init, shuffling, dropout."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(enabled: bool = True):
    """Within the block, torch uses deterministic algorithms only (an error names any op that has none), so
    a run repeats bit for bit on the same machine; the previous setting comes back afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    if enabled and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(enabled or before)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
