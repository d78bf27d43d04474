"""Multi30k (WMT16 multimodal task 1): English descriptions of Flickr30k images and their German translations.

29,000 training, 1,014 validation and 1,000 test pairs ("test_2016_flickr", the usual Multi30k test set),
untokenised and cased, one sentence per line. Files come from `$EMBER_DATA/multi30k/`, the cache, or the
`multi30k/dataset` repository at a pinned commit (checked by sha256).

>>> (x_train, y_train), (x_val, y_val), (x_test, y_test) = datasets.multi30k.load_data(source="de", target="en")
"""
import gzip

import numpy as np

from ember.datasets import store
from ember.errors import DatasetError

MIRRORS = ["https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw/"]
LANGUAGES = ("de", "en")
SPLITS = ("train", "val", "test_2016_flickr")
FILES = {f.name: f for f in (
    store.RemoteFile("train.de.gz", "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6"),
    store.RemoteFile("train.en.gz", "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f"),
    store.RemoteFile("val.de.gz", "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a"),
    store.RemoteFile("val.en.gz", "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28"),
    store.RemoteFile("test_2016_flickr.de.gz", "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"),
    store.RemoteFile("test_2016_flickr.en.gz", "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"),
)}


def read_sentences(split: str, language: str) -> np.ndarray:
    """The sentences of one side of one split, as a NumPy array of str (line i pairs with line i)."""
    if split not in SPLITS:
        raise ValueError(f"multi30k split must be one of {', '.join(SPLITS)}, got {split!r}")
    if language not in LANGUAGES:
        raise ValueError(f"multi30k language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    path = store.fetch("multi30k", FILES[f"{split}.{language}.gz"], MIRRORS)
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a readable gzip of UTF-8 text ({e})") from None
    if lines and lines[-1] == "":
        lines.pop()
    return np.array([line.strip() for line in lines], dtype=object)


def load_data(source: str = "de", target: str = "en"):
    """((train_source, train_target), (val_source, val_target), (test_source, test_target)): arrays of str.

    29,000 / 1,014 / 1,000 sentence pairs; the test split is test_2016_flickr.
    """
    if source == target:
        raise ValueError(f"multi30k source and target must differ, got {source!r} twice")
    pairs = []
    for split in SPLITS:
        x, y = read_sentences(split, source), read_sentences(split, target)
        if len(x) != len(y):
            raise DatasetError(f"multi30k: {split}.{source}.gz has {len(x)} lines but {split}.{target}.gz has "
                               f"{len(y)}; they must pair line by line")
        pairs.append((x, y))
    return tuple(pairs)
