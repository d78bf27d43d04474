"""The 8x8 handwritten digits shipped inside scikit-learn (1,797 images): always available offline.

Pixel values 0..16 are scaled to uint8 0..255 so the arrays look like MNIST's. The split is fixed:
a seeded shuffle, then 1,438 training and 359 test images (80/20).
"""
import numpy as np

from ember.errors import DatasetError

TEST_FRACTION = 0.2
_SEED = 0


def load_data():
    """((x_train, y_train), (x_test, y_test)): uint8 images (N, 8, 8) and uint8 labels (N,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("the digits dataset ships with scikit-learn: pip install 'ember[datasets]'") from None
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    order = np.random.default_rng(_SEED).permutation(len(images))
    cut = len(images) - int(round(len(images) * TEST_FRACTION))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])
