"""MovieLens 100K (GroupLens): 100,000 ratings (1-5) of 1,682 movies by 943 users, with titles and genres.

Ids are MovieLens's own (users 1..943, items 1..1682), so `--user 42` means the dataset's user 42; an
embedding table for them has `NUM_USERS + 1` / `NUM_ITEMS + 1` rows (row 0 unused).

>>> (x_train, y_train), (x_test, y_test) = datasets.movielens.load_data(split="u1")
>>> x_train[:2]          # (user, item) pairs, int64
array([[1, 1], [1, 2]])
"""
import numpy as np

from ember.datasets import store
from ember.errors import DatasetError

MIRRORS = ["https://raw.githubusercontent.com/Shelton-hub/SVD_Slope_one/92b3a978f8f57e7f9011431ad319753263c91bae/"
           "ml-100k/"]
FILES = {f.name: f for f in (
    store.RemoteFile("u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
    store.RemoteFile("u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
    store.RemoteFile("u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
    store.RemoteFile("u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
    store.RemoteFile("u1.base", "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a"),
    store.RemoteFile("u1.test", "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950"),
    store.RemoteFile("ua.base", "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2"),
    store.RemoteFile("ua.test", "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42"),
)}
SPLITS = ("u1", "ua")
NUM_USERS, NUM_ITEMS = 943, 1682


def _path(name: str):
    return store.fetch("ml-100k", FILES[name], MIRRORS)


def is_available() -> bool:
    """True when every file is already on disk (EMBER_DATA or cache): no download needed."""
    return all(store.find_local("ml-100k", name) for name in FILES)


def _read_ratings(name: str) -> np.ndarray:
    """The (N, 4) int64 rows user, item, rating, timestamp of a tab-separated ratings file."""
    path = _path(name)
    try:
        rows = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    except ValueError as e:
        raise DatasetError(f"{path}: not a MovieLens ratings file (user, item, rating, timestamp per line): "
                           f"{e}") from None
    if rows.shape[1] != 4 or len(rows) == 0:
        raise DatasetError(f"{path}: expected 4 tab-separated columns, got {rows.shape[1]}")
    users, items, ratings = rows[:, 0], rows[:, 1], rows[:, 2]
    if users.min() < 1 or users.max() > NUM_USERS or items.min() < 1 or items.max() > NUM_ITEMS:
        raise DatasetError(f"{path}: user or item ids outside 1..{NUM_USERS} / 1..{NUM_ITEMS}")
    if ratings.min() < 1 or ratings.max() > 5:
        raise DatasetError(f"{path}: ratings outside 1..5")
    return rows


def load_data(split: str = "u1"):
    """((x_train, y_train), (x_test, y_test)) of a predefined split: x int64 (N, 2) user and item ids,
    y float32 ratings. "u1": 80,000 / 20,000 ratings (fold 1 of 5); "ua": 10 test ratings per user."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    parts = []
    for name in (f"{split}.base", f"{split}.test"):
        rows = _read_ratings(name)
        parts.append((rows[:, :2].copy(), rows[:, 2].astype(np.float32)))
    return tuple(parts)


def load_ratings() -> dict[str, np.ndarray]:
    """All 100,000 ratings (u.data) as arrays "user", "item", "rating" (int64) and "timestamp" (unix seconds)."""
    rows = _read_ratings("u.data")
    return {"user": rows[:, 0], "item": rows[:, 1], "rating": rows[:, 2], "timestamp": rows[:, 3]}


def _pipe_rows(name: str, fields: int) -> list[list[str]]:
    path = _path(name)
    text = path.read_bytes().decode("latin-1")  # u.item has accented titles in latin-1
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    bad = next((i for i, row in enumerate(rows) if len(row) < fields), None)
    if bad is not None:
        raise DatasetError(f"{path}: line {bad + 1} has {len(rows[bad])} '|'-separated fields, expected {fields}")
    return rows


def load_items() -> dict:
    """Movies by id (index 0 empty): {"title": array of strings, "genres": list of genre-name lists, "year":
    int64 array of release years, 0 where u.item gives no date}."""
    genre_names = [row[0] for row in _pipe_rows("u.genre", 2)]
    titles, genres = np.full(NUM_ITEMS + 1, "", dtype=object), [[] for _ in range(NUM_ITEMS + 1)]
    years = np.zeros(NUM_ITEMS + 1, dtype=np.int64)
    for row in _pipe_rows("u.item", 5 + len(genre_names)):
        item = int(row[0])
        titles[item] = row[1]
        genres[item] = [name for name, flag in zip(genre_names, row[5:]) if flag == "1"]
        years[item] = int(row[2][-4:]) if row[2][-4:].isdigit() else 0  # release date "01-Jan-1995"
    return {"title": titles.astype(str), "genres": genres, "year": years}


def load_users() -> dict[str, np.ndarray]:
    """Users by id (index 0 unused): "age" (int64), "gender", "occupation", "zip" (str)."""
    rows = _pipe_rows("u.user", 5)
    table = {"age": np.zeros(NUM_USERS + 1, dtype=np.int64), "gender": np.full(NUM_USERS + 1, "", dtype=object),
             "occupation": np.full(NUM_USERS + 1, "", dtype=object), "zip": np.full(NUM_USERS + 1, "", dtype=object)}
    for user, age, gender, occupation, zip_code in (row[:5] for row in rows):
        user = int(user)
        table["age"][user], table["gender"][user] = int(age), gender
        table["occupation"][user], table["zip"][user] = occupation, zip_code
    return {k: v if k == "age" else v.astype(str) for k, v in table.items()}
