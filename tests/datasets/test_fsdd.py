"""FSDD from $EMBER_DATA: the official split, leave-one-speaker-out, a missing folder; its download from a
server on 127.0.0.1."""
import io
import tarfile
from unittest import mock

import numpy as np
import pytest

from ember import datasets
from ember.datasets import store
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
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    with pytest.raises(DatasetError, match="no recordings/ folder"):
        datasets.fsdd.load_data()
    with pytest.raises(ValueError, match="speaker:NAME"):
        datasets.fsdd.load_data("speaker:alice")


def fsdd_archive(path, recordings, tamper=False):
    """A tar.gz laid out as GitHub's archive of the FSDD repository, with the real recordings, a README, and
    members ember must not write: a path escaping the folder and a link."""
    top = f"free-spoken-digit-dataset-{datasets.fsdd.COMMIT}"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        readme = tarfile.TarInfo(f"{top}/README.md")
        readme.size = 5
        tar.addfile(readme, io.BytesIO(b"FSDD\n"))
        for wav in sorted(recordings.glob("*.wav")):
            data = wav.read_bytes()
            if tamper and wav.name == "7_theo_3.wav":
                data = data[:-2] + b"\x00\x01"
            info = tarfile.TarInfo(f"{top}/recordings/{wav.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        escape = tarfile.TarInfo(f"{top}/recordings/../../../escaped_0_theo_0.wav")
        escape.size = 4
        tar.addfile(escape, io.BytesIO(b"evil"))
        link = tarfile.TarInfo(f"{top}/recordings/9_theo_99.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)


@pytest.mark.data
def test_downloads_verifies_and_caches_the_recordings(ember_data, clean_env, server):
    root, url, requests = server
    fsdd_archive(root / "fsdd.tar.gz", ember_data / "fsdd" / "recordings")
    mirrors = [url + "gone.tar.gz", url + "fsdd.tar.gz"]  # the first mirror fails: the next one is tried
    with mock.patch.object(datasets.fsdd, "MIRRORS", mirrors):
        assert not datasets.fsdd.is_available()  # looks without downloading
        (x_train, y_train), (x_test, y_test) = datasets.fsdd.load_data()
        assert x_train.shape == (2700, 8000) and x_test.shape == (300, 8000)
        assert datasets.fsdd.is_available() and datasets.fsdd.load_data()[1][0].shape == (300, 8000)
    assert requests.count("/fsdd.tar.gz") == 1  # the second load reads the cache
    cached = store.cache_dir() / "fsdd"
    assert sorted(p.name for p in cached.iterdir()) == ["recordings"]  # no archive or staging folder left
    assert len(list((cached / "recordings").iterdir())) == 3000 and not list(clean_env.rglob("escaped_*"))


@pytest.mark.data
def test_a_tampered_or_broken_archive_is_refused_and_leaves_nothing(ember_data, clean_env, server):
    root, url, _ = server
    fsdd_archive(root / "fsdd.tar.gz", ember_data / "fsdd" / "recordings", tamper=True)
    (root / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    with mock.patch.object(datasets.fsdd, "MIRRORS", [url + "fsdd.tar.gz", url + "broken.tar.gz"]):
        with pytest.raises(DatasetError) as error:
            datasets.fsdd.load_data()
    message = str(error.value)
    assert "its 3000 recordings are not FSDD's 3000" in message and "not a readable tar.gz archive" in message
    assert list((store.cache_dir() / "fsdd").iterdir()) == []


def test_offline_says_so(clean_env, monkeypatch):
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    with pytest.raises(DatasetError, match="none was downloaded .EMBER_OFFLINE is set"):
        datasets.fsdd.load_data()
