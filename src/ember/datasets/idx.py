"""Reader for the IDX format of MNIST-like datasets (optionally gzipped), checked against its header."""
import gzip
import zlib
from pathlib import Path

import numpy as np

from ember.errors import DatasetError

_UBYTE = 0x08


def read_idx(path: Path, *, rank: int) -> np.ndarray:
    """The uint8 array stored in an IDX file of the given rank (1 for labels, 3 for images)."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    if len(data) < 4 + 4 * rank:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != _UBYTE or ndim != rank:
        raise DatasetError(f"{path}: wrong magic number {data[:4].hex()} (expected 0000{_UBYTE:02x}{rank:02x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    body = data[4 + 4 * rank:]
    if len(body) != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says {shape} = {int(np.prod(shape))} bytes of data, "
                           f"found {len(body)} (truncated or corrupt)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def load_idx_dataset(fetch_file) -> tuple:
    """((x_train, y_train), (x_test, y_test)) from the four standard MNIST-layout files."""
    def pair(prefix):
        images = read_idx(fetch_file(f"{prefix}-images-idx3-ubyte.gz"), rank=3)
        labels = read_idx(fetch_file(f"{prefix}-labels-idx1-ubyte.gz"), rank=1)
        if len(images) != len(labels):
            raise DatasetError(f"{prefix}: {len(images)} images but {len(labels)} labels")
        return images.copy(), labels.copy()
    return pair("train"), pair("t10k")
