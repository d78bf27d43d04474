"""MovieLens-100k from $EMBER_DATA, and clear errors for broken files."""
import numpy as np
import pytest

from ember import datasets
from ember.errors import DatasetError


@pytest.mark.data
def test_u1_split_and_side_tables(ember_data, monkeypatch):
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    (x_train, y_train), (x_test, y_test) = datasets.movielens.load_data("u1")
    assert x_train.shape == (80000, 2) and x_test.shape == (20000, 2) and x_train.dtype == np.int64
    assert y_train.dtype == np.float32 and set(np.unique(y_test)) == {1, 2, 3, 4, 5}
    ratings = datasets.movielens.load_ratings()
    assert len(ratings["user"]) == 100000 and np.bincount(ratings["rating"])[1:].tolist() == [
        6110, 11370, 27145, 34174, 21201]
    items = datasets.movielens.load_items()
    assert items["title"][1] == "Toy Story (1995)" and items["genres"][1] == ["Animation", "Children's", "Comedy"]
    assert "Misérables, Les (1995)" in items["title"]  # u.item is latin-1
    assert items["year"][1] == 1995 and items["year"][267] == 0  # item 267 has no release date
    users = datasets.movielens.load_users()
    assert users["age"][1] == 24 and users["occupation"][1] == "technician"


def test_a_ratings_file_with_bad_ids_names_itself(tmp_path, monkeypatch):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u1.base").write_text("1\t1\t5\t874965758\n2000\t1\t3\t874965758\n")
    monkeypatch.setenv("EMBER_DATA", str(tmp_path))
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    with pytest.raises(DatasetError, match=r"u1\.base: user or item ids outside"):
        datasets.movielens.load_data("u1")
    (folder / "u1.base").write_text("1\tone\t5\t874965758\n")
    with pytest.raises(DatasetError, match=r"u1\.base: not a MovieLens ratings file"):
        datasets.movielens.load_data("u1")


def test_unknown_split_and_missing_files(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="split must be one of u1, ua"):
        datasets.movielens.load_data("u7")
    monkeypatch.setenv("EMBER_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EMBER_OFFLINE", "1")
    with pytest.raises(DatasetError, match="u.data is not in"):
        datasets.movielens.load_ratings()
