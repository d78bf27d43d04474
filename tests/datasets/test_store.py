import gzip
import hashlib

import numpy as np
import pytest

from ember.datasets import mnist, store
from ember.errors import DatasetError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_caches(clean_env, server):
    root, url, requests = server
    (root / "a.bin").write_bytes(b"hello")
    file = store.RemoteFile("a.bin", sha(b"hello"))
    path = store.fetch("toy", file, [url])
    assert path == store.cache_dir() / "toy" / "a.bin" and path.read_bytes() == b"hello"
    assert store.fetch("toy", file, [url]) == path and len(requests) == 1  # second time from the cache


def test_checksum_mismatch_leaves_nothing(clean_env, server):
    root, url, _ = server
    (root / "a.bin").write_bytes(b"tampered")
    with pytest.raises(DatasetError, match="sha256 .* does not match"):
        store.fetch("toy", store.RemoteFile("a.bin", sha(b"hello")), [url])
    folder = store.cache_dir() / "toy"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_falls_back_to_the_next_mirror(clean_env, server):
    root, url, _ = server
    (root / "a.bin").write_bytes(b"hello")
    path = store.fetch("toy", store.RemoteFile("a.bin", sha(b"hello")), [url + "missing/", url])
    assert path.read_bytes() == b"hello"


def test_offline_error_says_which_file_goes_where(clean_env, monkeypatch):
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"mnist: train-images-idx3-ubyte.gz is not in \$EMBER_DATA/mnist/"):
        mnist.load_data()


def test_ember_data_comes_first(clean_env, monkeypatch):
    (clean_env / "data" / "toy").mkdir(parents=True)
    (clean_env / "data" / "toy" / "a.bin").write_bytes(b"local")
    monkeypatch.setenv("EMBER_DATA", str(clean_env / "data"))
    assert store.fetch("toy", store.RemoteFile("a.bin", "0" * 64), ["http://127.0.0.1:9/"]).read_bytes() == b"local"


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_mnist_downloads_from_a_mirror_end_to_end(clean_env, server, monkeypatch):
    root, url, requests = server
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
              "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3)}
    files = {}
    for name, array in arrays.items():
        data = idx_gz(array)
        (root / name).write_bytes(data)
        files[name] = store.RemoteFile(name, sha(data))
    monkeypatch.setattr(mnist, "FILES", files)
    monkeypatch.setattr(mnist, "MIRRORS", [url])
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert x_train.shape == (5, 28, 28) and x_train.dtype == np.uint8 and y_test.shape == (3,)
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte.gz"])
    assert len(requests) == 4 and mnist.is_available()
