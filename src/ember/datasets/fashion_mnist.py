"""Fashion-MNIST (Zalando), as `keras.datasets.fashion_mnist`: uint8 images (N, 28, 28), uint8 labels (N,)."""
from ember.datasets import idx, store

MIRRORS = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
FILES = {f.name: f for f in (
    store.RemoteFile("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    store.RemoteFile("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    store.RemoteFile("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    store.RemoteFile("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
)}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


def load_data():
    """((x_train, y_train), (x_test, y_test)): 60,000 / 10,000 images of 28x28 in 10 clothing classes."""
    return idx.load_idx_dataset(lambda name: store.fetch("fashion_mnist", FILES[name], MIRRORS))
