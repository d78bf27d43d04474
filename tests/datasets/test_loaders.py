import numpy as np
import pytest

from ember import datasets


def test_digits_ships_offline_with_keras_shapes():
    (x_train, y_train), (x_test, y_test) = datasets.digits.load_data()
    assert x_train.shape == (1438, 8, 8) and x_test.shape == (359, 8, 8)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8 and x_train.max() == 255
    assert set(np.unique(y_test)) == set(range(10))


@pytest.mark.data
def test_mnist_from_ember_data(ember_data, monkeypatch):
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.bincount(y_test).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.data
def test_fashion_mnist_from_ember_data(ember_data, monkeypatch):
    if not (ember_data / "fashion_mnist").is_dir():
        pytest.skip("no fashion_mnist/ under $EMBER_DATA")
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    (x_train, _), (x_test, _) = datasets.fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
