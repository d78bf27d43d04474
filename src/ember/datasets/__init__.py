"""Named real datasets with Keras's `load_data()` shapes and dtypes."""
from ember.datasets import digits, fashion_mnist, fsdd, mnist, movielens, multi30k, sst2

__all__ = ["mnist", "fashion_mnist", "digits", "sst2", "movielens", "fsdd", "multi30k"]
