"""MNIST handwritten digits, as `keras.datasets.mnist`: uint8 images (N, 28, 28), uint8 labels (N,)."""
from ember.datasets import idx, store

MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"]
FILES = {f.name: f for f in (
    store.RemoteFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    store.RemoteFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    store.RemoteFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    store.RemoteFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
)}


def is_available() -> bool:
    """True when all four files are already on disk (EMBER_DATA or cache): no download needed."""
    return all(store.find_local("mnist", name) for name in FILES)


def load_data():
    """((x_train, y_train), (x_test, y_test)): 60,000 / 10,000 images of 28x28.

    >>> (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    """
    return idx.load_idx_dataset(lambda name: store.fetch("mnist", FILES[name], MIRRORS))
