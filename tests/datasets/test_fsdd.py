"""FSDD from $EMBER_DATA: the official split, leave-one-speaker-out, and a missing folder."""
import numpy as np
import pytest

from ember import datasets
from ember.errors import DatasetError


@pytest.mark.data
def test_official_and_speaker_splits(ember_data):
    (x_train, y_train), (x_test, y_test) = datasets.fsdd.load_data()
    assert x_train.shape == (2700, 8000) and x_test.shape == (300, 8000) and x_train.dtype == np.float32
    assert np.bincount(y_test).tolist() == [30] * 10 and np.abs(x_train).max() <= 1.0
    (x_train, _), (x_test, y_test) = datasets.fsdd.load_data("speaker:theo", length=4000)
    assert x_train.shape == (2500, 4000) and x_test.shape == (500, 4000)


def test_bad_split_and_missing_recordings(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DatasetError, match="no recordings/ folder"):
        datasets.fsdd.load_data()
    with pytest.raises(ValueError, match="speaker:NAME"):
        datasets.fsdd.load_data("speaker:alice")
