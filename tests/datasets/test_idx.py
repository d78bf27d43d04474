import gzip

import numpy as np
import pytest

from ember.datasets.idx import read_idx
from ember.errors import DatasetError
from tests.datasets.test_store import idx_gz


def test_reads_a_valid_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(idx_gz(np.arange(12).reshape(3, 2, 2)))
    np.testing.assert_array_equal(read_idx(path, rank=3), np.arange(12).reshape(3, 2, 2))


@pytest.mark.parametrize("content,message", [
    (gzip.compress(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(5)), "truncated or corrupt"),
    (gzip.compress(bytes([0, 0, 8, 1])), "too short"),
    (gzip.compress(b"\x1f\x8b\x08\x01" + bytes(8)), "wrong magic number"),
    (b"not gzip at all", "cannot read"),
    (gzip.compress(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes(3))[:-6], "cannot read"),
])
def test_corrupt_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "labels.gz"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(path, rank=1)
    assert "labels.gz" in str(info.value)
