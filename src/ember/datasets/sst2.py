"""SST-2 (Stanford Sentiment Treebank, binary, GLUE's tsv files): sentences and 0/1 labels.

GLUE's test labels are not public, so `load_data()` returns the dev split as the test split (as is customary).
"""
from ember.data.text import read_labeled_text
from ember.datasets import store

MIRRORS = ["https://media.githubusercontent.com/media/thrudgelmir/datas/0f3ae14f01ddc75b915f8951f25797c826172127/SST-2/"]
FILES = {f.name: f for f in (
    store.RemoteFile("train.tsv", "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1"),
    store.RemoteFile("dev.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
)}
CLASS_NAMES = ["negative", "positive"]


def load_data():
    """((train_texts, train_labels), (dev_texts, dev_labels)): 67,349 / 872 sentences, labels 0/1.

    >>> (x_train, y_train), (x_test, y_test) = datasets.sst2.load_data()
    """
    train, dev = (read_labeled_text(store.fetch("sst2", FILES[name], MIRRORS), "sentence", "label")[:2]
                  for name in ("train.tsv", "dev.tsv"))
    return train, dev
